"""The top-level ``sqcodec`` app: every command is registered; bad input gives one line and exit 1."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sqcodec.cli import app

CONFIG = Path(__file__).resolve().parents[1] / "sqcodec" / "configs" / "tiny.yaml"


def test_all_commands_are_registered() -> None:
    out = CliRunner().invoke(app, ["--help"]).output
    for name in ("encode", "decode", "info", "score", "train", "plot", "demo", "mushra", "abx"):
        assert name in out


def test_train_without_data_fails_in_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "--config", str(CONFIG), "--out", str(tmp_path / "exp")])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sqcodec: error:") and "data.train" in lines[0]


def test_demo_on_a_text_file_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    res = CliRunner().invoke(app, ["demo", str(bad), "--out", str(tmp_path / "demo")])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0]
