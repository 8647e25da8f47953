"""Telemetry: JSONL + TensorBoard records of the real codec model, the PNG plot, the module entry point."""

from __future__ import annotations

import math

import pytest
import yaml
from test_train_helpers import make_npy_corpus, tiny_cfg

from sqcodec.train.__main__ import main
from sqcodec.train.telemetry import plot_telemetry, read_jsonl


def test_module_entry_point_logs_telemetry_and_plots(tmp_path, capsys):
    data = make_npy_corpus(tmp_path / "d")
    cfg = tiny_cfg(data, overrides=["train.steps=8"])
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    exp = tmp_path / "exp"
    rc = main(
        [
            "--config",
            str(cfg_path),
            "--out",
            str(exp),
            "-q",
            "--set",
            "train.plot=true",
            "train.tensorboard=true",
            "--set",
            "train.val_every=4",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(exp)

    recs = read_jsonl(exp / "train.jsonl")
    train = [r for r in recs if r["split"] == "train"]
    valid = [r for r in recs if r["split"] == "valid"]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert [r["step"] for r in valid] == [4, 8]
    r = train[0]
    for layer in (1, 2, 3):
        assert r["stats"][f"var_l{layer}"] > 0
        assert 0 <= r["stats"][f"entropy_l{layer}"] <= math.log(8) + 1e-6
        assert 1 <= r["stats"][f"perplexity_l{layer}"] <= 8 + 1e-6
    assert {"sigma2", "mse"} <= set(r["stats"])
    assert {"reconstruction", "entropy_l1"} <= set(r["terms"])
    assert r["lr"] == pytest.approx(3e-3) and r["grad_norm"] > 0 and r["time"] >= 0
    # step s (1-based count of completed steps) trained at tau(s - 1) = exp(-1e-5 (s - 1))
    assert [t["temperature"] for t in train] == pytest.approx([math.exp(-1e-5 * s) for s in range(8)])
    assert valid[0]["n"] == 2 and math.isfinite(valid[0]["loss"])

    png = exp / "telemetry.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((exp / "tb").glob("events.out.tfevents.*"))
    assert (exp / "config.yaml").is_file() and (exp / "best.pt").is_file()
    assert (exp / "train.log").read_text().count("valid loss") == 2

    out = plot_telemetry(exp / "train.jsonl", tmp_path / "again.png")
    assert out.stat().st_size > 10_000


def test_entry_point_reports_bad_config_in_one_line(tmp_path, capsys):
    cfg_path = tmp_path / "bad.yaml"
    cfg_path.write_text("train: {stepz: 3}\n")
    assert main(["--config", str(cfg_path), "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "train.steps" in err and "\n" not in err
    cfg_path.write_text("data: {train: /nonexistent/*.npy}\n")
    assert main(["--config", str(cfg_path), "--out", str(tmp_path / "exp")]) == 2
    assert "matched no files" in capsys.readouterr().err
