"""Smoke tests of the speed, memory, throughput and RSQ-vs-RQ bench scripts: each runs its tiny setting
on real audio and writes a well-formed JSON record with finite, positive numbers (no timing asserts)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(realaudio: Path, script: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SQCODEC_REALAUDIO": str(realaudio), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=REPO,
    )
    assert (r.returncode == 0) == ok, r.stderr[-3000:]
    return r


def _positive(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_bench_codec_speed_smoke(realaudio, tmp_path):
    out = tmp_path / "speed.json"
    _run(realaudio, "bench_codec_speed.py", "--smoke", "--threads", "1", "--json", str(out))
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "codec_real_time_factor" and rec["git"]["commit"]
    systems = {(r["system"], r["batch"]) for r in rec["results"]}
    names = ("codec_only", "full_griffinlim", "full_hifigan", "encodec")
    assert systems == {(s, b) for s in names for b in (1, 2)}
    for r in rec["results"]:
        assert _positive(r["x_realtime"]) and _positive(r["median_seconds"])
        assert r["audio_seconds"] == 1.0 * r["batch"]


def test_bench_encode_memory_smoke(realaudio, tmp_path):
    out, md = tmp_path / "mem.json", tmp_path / "mem.md"
    _run(
        realaudio,
        "bench_encode_memory.py",
        "--smoke",
        "--threads",
        "1",
        "--json",
        str(out),
        "--markdown",
        str(md),
    )
    rec = json.loads(out.read_text())
    assert [r["seconds"] for r in rec["results"]] == [2.0, 4.0]
    for r in rec["results"]:
        assert r["wav_bytes"] == 44 + 2 * 16000 * r["seconds"]  # the tiled input really has that length
        assert _positive(r["sqcodec"]["peak_rss_mib"]) and r["sqcodec"]["codes_bytes"] > 0
        assert _positive(r["encodec"]["peak_rss_mib"])
    assert md.read_text().startswith("| input | sqcodec encode peak RSS")


def test_bench_train_throughput_smoke(tmp_path):
    out = tmp_path / "tt.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_train_throughput.py"), "--smoke", "--threads", "1"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    got = {(x["pair"], x["quantizer"]) for x in rec["results"]}
    assert got == {
        ("speech", "gaussian_sq"),
        ("speech", "vq"),
        ("urbansound", "residual_sq"),
        ("urbansound", "residual_vq"),
    }
    for x in rec["results"]:
        assert _positive(x["steps_per_second"]) and _positive(x["frames_per_second"]) and x["batch_size"] == 2


def test_bench_rsq_vs_rq_smoke(realaudio, tmp_path):
    out = tmp_path / "rr.json"
    args = [
        "--out",
        str(tmp_path / "exp"),
        "--steps",
        "4",
        "--seeds",
        "1",
        "--layers",
        "4",
    ]  # the recipe has L = 4 and 8 configs
    args += ["--channels", "8", "--batch", "2", "--limit", "10", "--json", str(out)]
    _run(realaudio, "bench_rsq_vs_rq.py", *args)
    rec = json.loads(out.read_text())
    assert rec["n_clips"] == {"train": 6, "valid": 2, "test": 2}
    assert set(rec["runs"]) == {"rq_l4_s1", "rsq_l4_s1"}
    for run in rec["runs"].values():
        ev = run["eval"]
        assert (
            ev["step"] == 4 and len(ev["rmse_hard_per_layers"]) == 4 and len(ev["perplexity_per_layer"]) == 4
        )
        assert all(_positive(v) for v in ev["rmse_hard_per_layers"]) and _positive(ev["rmse_soft_all_layers"])
        assert all(1.0 <= p <= 8.0 for p in ev["perplexity_per_layer"])
    assert rec["runs"]["rsq_l4_s1"]["eval"]["variance_per_layer"] is not None
    assert any(row.startswith("| 4 | RSQ / RQ |") for row in rec["table"])

    # --merge: seed 2 has no checkpoints here, seed 1 comes from the file above, marked as merged
    merged = tmp_path / "merged.json"
    args2 = [a if a != "1" else "2" for a in args[:6]] + args[6:-1] + [str(merged), "--eval-only"]
    _run(realaudio, "bench_rsq_vs_rq.py", *args2, "--merge", str(out))
    got = json.loads(merged.read_text())
    assert got["runs"] == {k: {**v, "merged_from": str(out)} for k, v in rec["runs"].items()}
    assert got["unfinished"] == ["rq_l4_s2", "rsq_l4_s2"] and got["table"] == rec["table"]
    # runs made with another step budget are refused, naming the file
    r = _run(
        realaudio, "bench_rsq_vs_rq.py", *args2[:2], "--steps", "5", *args2[4:], "--merge", str(out), ok=False
    )
    assert str(out) in r.stderr and "steps" in r.stderr


def test_bench_entropy_smoke(realaudio, tmp_path):
    out = tmp_path / "ent.json"
    _run(realaudio, "bench_entropy.py", "--limit", "2", "--layers", "1", "8", "--json", str(out))
    rec = json.loads(out.read_text())
    assert rec["files"] == 2 and [r["layers"] for r in rec["rows"]] == [1, 8]
    for r in rec["rows"]:
        assert r["nominal_bps"] == 250.0 * r["layers"] and len(r["ideal_bits_per_index"]) == r["layers"]
        # auto never writes a larger file than plain packing, nor than per-file tables alone
        assert 0 < r["auto"]["bytes"] <= r["per_file"]["bytes"] <= r["packed"]["bytes"]
        # the version-2 header saves over 250 bytes per file against version 1's plain JSON
        assert r["packed_v1"]["bytes"] - r["packed"]["bytes"] > 250 * 2
        assert r["auto"]["bps"] > r["nominal_bps"]  # the header is counted in the actual rate


def test_bench_sq_vs_vq_smoke(realaudio, tmp_path):
    out = tmp_path / "sqvq.json"
    args = [
        "--out",
        str(tmp_path / "exp"),
        "--steps",
        "4",
        "--channels",
        "16",
        "--batch",
        "4",
        "--limit",
        "6",
    ]
    _run(realaudio, "bench_sq_vs_vq.py", *args, "--systems", "sq_IV,vq_1e-1", "--json", str(out))
    rec = json.loads(out.read_text())
    assert set(rec["runs"]) == {"sq_IV_s1", "vq_1e-1_s1"} and "unfinished" not in rec
    for run in rec["runs"].values():
        assert _positive(run["mse_db2"]) and run["files"] == 6
        assert 1.0 <= run["perplexity"] <= 512.0
        assert 1 <= run["lowest_validation"]["step"] <= 4 and _positive(run["lowest_validation"]["mse_db2"])
    # the training-mode (sampled) score exists for the stochastic quantizer only
    assert _positive(rec["runs"]["sq_IV_s1"]["mse_db2_training_mode"])
    assert rec["runs"]["vq_1e-1_s1"]["mse_db2_training_mode"] is None
    assert rec["paper_zerospeech_mse_db2"]["sq_IV"] == 32.32
    assert [row.split(" | ")[0] for row in rec["table"][2:]] == ["| sq_IV", "| vq_1e-1"]
