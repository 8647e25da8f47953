"""The Quick-start main job (``sqcodec demo``): encode + decode on the embedded default model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from helpers import run_cli

from sqcodec.demo import run_demo


def test_demo_codes_and_decodes_its_own_clip(tmp_path: Path) -> None:
    summary = run_demo(None, tmp_path)
    assert (tmp_path / "input.codes").is_file()
    rows = summary["layers"]
    assert [r["layers"] for r in rows] == [1, 2, 4, 8]
    assert np.allclose([r["kbps"] for r in rows], [0.25, 0.5, 1.0, 2.0])
    clip, sr = sf.read(tmp_path / "input.wav")
    for n in (1, 2, 4, 8):
        wave, sr2 = sf.read(tmp_path / f"decoded_{n}layers.wav")
        assert sr2 == sr == 16000
        assert len(wave) == len(clip) and np.abs(wave).max() > 1e-3
    assert json.loads((tmp_path / "summary.json").read_text())["layers"] == rows


def test_demo_on_a_named_file_via_the_cli(realaudio, tmp_path: Path) -> None:
    src = realaudio / "speech/ljspeech/LJ001-0003.flac"
    if not src.is_file():  # any LJSpeech file will do
        src = sorted((realaudio / "speech/ljspeech").rglob("*.flac"))[0]
    code, out, err = run_cli("demo", str(src), "--out", str(tmp_path / "d"))
    assert code == 0, err
    assert "2.000" in out and ("HiFi-GAN" in out or "Griffin-Lim" in out)
    info = sf.info(tmp_path / "d" / "decoded_8layers.wav")
    assert info.samplerate == sf.info(src).samplerate and info.frames == sf.info(src).frames


def test_demo_refuses_a_missing_file(tmp_path: Path) -> None:
    code, _, err = run_cli("demo", str(tmp_path / "nope.wav"))
    assert code == 1 and "nope.wav" in err and len(err.strip().splitlines()) == 1
