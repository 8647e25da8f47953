"""The Quick-start main job (``sqcodec demo``) on a clip it makes itself: trains, codes, decodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from sqcodec.demo import run_demo


def test_demo_codes_and_decodes_its_own_clip(tmp_path: Path) -> None:
    summary = run_demo(None, tmp_path, steps=20)
    codes = np.load(tmp_path / "codes.npy")
    assert codes.shape[:2] == (1, 4) and codes.min() >= 0 and codes.max() < 32
    rows = summary["layers"]
    assert [r["layers"] for r in rows] == [1, 2, 3, 4]
    # bitrate grows by log2(32) bits per latent per layer at 31.25 latents/s
    assert np.allclose(np.diff([r["kbps"] for r in rows]), 31.25 * 5 / 1000, atol=1e-3)
    clip, sr = sf.read(tmp_path / "input.wav")
    for n in range(1, 5):
        wave, sr2 = sf.read(tmp_path / f"decoded_{n}layers.wav")
        assert sr2 == sr == 16000
        assert len(wave) == len(clip) and np.abs(wave).max() > 1e-3
    ref, _ = sf.read(tmp_path / "input_griffinlim.wav")
    assert len(ref) == len(clip) and np.abs(ref).max() > 0.1
    assert json.loads((tmp_path / "summary.json").read_text())["codes_shape"] == list(codes.shape)


def test_demo_runs_again_into_the_same_folder(tmp_path: Path) -> None:
    run_demo(None, tmp_path, steps=5)
    again = run_demo(None, tmp_path, steps=5)
    assert [r["layers"] for r in again["layers"]] == [1, 2, 3, 4]
