"""Smoke test of tools/bench_quantizer.py: it runs its tiny setting and writes a well-formed record.

No timing assertions: only that the JSON has the expected structure and positive, finite numbers.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "bench_quantizer.py"
HAVE_PEER = importlib.util.find_spec("vector_quantize_pytorch") is not None


def _load_module():
    spec = importlib.util.spec_from_file_location("bench_quantizer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_args_smoke_overrides_sizes():
    bench = _load_module()
    args = bench.parse_args(["--smoke", "--codebook-size", "64,512", "--quantizers", "rsq,peer"])
    assert args.codebook_size == [8] and args.layers == [2] and args.batch_vectors == 256
    assert args.repeats == 2 and args.quantizers == ["rsq", "peer"]
    args = bench.parse_args(["--codebook-size", "8,64", "--layers", "4"])
    assert args.codebook_size == [8, 64] and args.layers == [4] and args.dim == 64
    with pytest.raises(SystemExit):
        bench.parse_args(["--quantizers", "nope"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--codebook-size", "8,x"])


def test_smoke_run_writes_valid_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--threads", "1", "--json", str(out_json)]
    cmd += ["--markdown", str(out_md)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]

    record = json.loads(out_json.read_text())
    for key in ("benchmark", "date", "machine", "git", "packages", "args", "results", "ratios", "command"):
        assert key in record, key
    for key in ("platform", "cpu_count", "torch", "device", "device_name", "torch_threads"):
        assert key in record["machine"], key
    assert record["machine"]["device"] == "cpu" and record["machine"]["torch_threads"] == 1
    assert "commit" in record["git"]
    assert record["packages"]["torch"]
    assert record["args"]["smoke"] is True and record["args"]["batch_vectors"] == 256

    expected = {"rsq", "rvq"} | ({"peer"} if HAVE_PEER else set())
    assert {r["quantizer"] for r in record["results"]} == expected
    for r in record["results"]:
        assert (r["codebook_size"], r["layers"], r["dim"]) == (8, 2, 64)
        assert len(r["repeat_seconds"]) == 2
        for key in ("vectors_per_second", "median_seconds", "min_seconds", "median_step_ms"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, (key, r[key])
        assert all(t > 0 for t in r["repeat_seconds"])

    assert len(record["ratios"]) == 1
    if HAVE_PEER:
        for key in ("rsq_over_peer", "rvq_over_peer", "rsq_over_peer_best", "rvq_over_peer_best"):
            value = record["ratios"][0][key]
            assert math.isfinite(value) and value > 0

    table = out_md.read_text()
    assert table.startswith("| K | L |") and "\n| 8 | 2 |" in table

    # --render rebuilds the same table from the stored JSON (no benchmarking)
    rerendered = tmp_path / "again.md"
    _load_module().main(["--render", str(out_json), "--markdown", str(rerendered)])
    assert rerendered.read_text() == table


def test_bench_codec_quality_smoke(realaudio, tmp_path):
    """tools/bench_codec_quality.py on one held-out file and two layer counts: a well-formed record."""
    out = tmp_path / "q"
    env = {**os.environ, "SQCODEC_REALAUDIO": str(realaudio), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(REPO / "tools" / "bench_codec_quality.py"),
        "--limit",
        "1",
        "--layers",
        "1",
        "2",
        "--vocoder",
        "griffinlim",
        "--griffinlim-iters",
        "4",
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["files"] == 1 and rec["vocoder"] == "griffinlim"
    rows = {s["system"]: s for s in rec["summary"]}
    assert set(rows) == {"griffinlim_gt", "codec_1", "codec_2"}
    assert rows["codec_1"]["bps"] == 250 and rows["codec_2"]["bps"] == 500
    for s in rows.values():
        assert all(math.isfinite(s[m]) for m in ("logmel_rmse", "mel_distance", "stoi", "pesq_wb"))
    assert rows["codec_2"]["logmel_rmse"] < rows["codec_1"]["logmel_rmse"]
    assert (
        rec["codes_size"]["packed_bytes"] > 0
        and "| sqcodec `--layers 2`" in out.with_suffix(".md").read_text()
    )
    # --split train --every 50: the 2nd file of every 50 of the training list (how well the model fits)
    r = subprocess.run(
        [*cmd, "--split", "train", "--every", "50", "--limit", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(out.with_suffix(".json").read_text())
    from sqcodec.data import speech_list

    train = [str(f.relative_to(realaudio)) for f in speech_list("train", realaudio)]
    assert rec["split"] == "train" and [row["file"] for row in rec["per_file"]["codec_1"]] == train[:51:50]
    assert out.with_suffix(".md").read_text().startswith("Training speakers: 2 files")


def test_bench_image_smoke_writes_valid_json(tmp_path):
    """tools/bench_image_smoke.py in its tiny setting (6 steps, d_b = 8): a well-formed record."""
    out_json, out_md = tmp_path / "img.json", tmp_path / "img.md"
    cmd = [sys.executable, str(REPO / "tools" / "bench_image_smoke.py"), "--smoke", "--threads", "1"]
    cmd += ["--json", str(out_json), "--markdown", str(out_md)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out_json.read_text())
    for key in ("benchmark", "date", "machine", "git", "packages", "args", "results", "summary", "command"):
        assert key in rec, key
    assert {r["system"] for r in rec["results"]} == {"sq", "vq"} and rec["args"]["smoke"] is True
    for r in rec["results"]:
        assert all(math.isfinite(r[m]) for m in ("mse", "rmse", "ssim", "perplexity_l1"))
        assert 1 <= r["perplexity_l1"] <= rec["args"]["codebook_size"]
    assert "| Gaussian SQ-VAE (I) |" in out_md.read_text()


@pytest.mark.slow
def test_gpu_session_script_runs_every_bench_and_stays_under_eight_files(tmp_path):
    """tools/gpu_session.sh run, in its tiny CPU setting: every benchmark exits 0 and writes a JSON record
    on the asked device, and the folder holds at most the 8 files a device lease can bring back."""
    env = {**os.environ, "SMOKE": "1", "DEVICE": "cpu", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "gpu"
    r = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_session.sh"), "run", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    log = (out / "session.log").read_text()
    assert r.returncode == 0, log[-3000:]
    names = {"quantizer", "train_throughput_fp32", "train_throughput_bf16", "codec_speed"}
    assert {p.stem for p in out.glob("*.json")} == names
    for name in names:
        assert f"== {name}: exit 0" in log
        record = json.loads((out / f"{name}.json").read_text())
        assert record["results"] and record["args"]["smoke"] is True and record["args"]["device"] == "cpu"
    assert len(list(out.iterdir())) <= 8
    bad = subprocess.run(["bash", str(REPO / "tools" / "gpu_session.sh")], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
