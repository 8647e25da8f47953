"""The embedded default codec (sqcodec/pretrained/default): what it is, where it came from, and that it
codes held-out speech better with every added layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import run_cli

from sqcodec.audio import load_mono, mel_features
from sqcodec.codec import DEFAULT_MODEL_DIR, load_codec
from sqcodec.data import speech_list
from sqcodec.vocoder import HifiGanVocoder

HELDOUT_SPEAKERS = [
    line.strip()
    for line in (DEFAULT_MODEL_DIR.parents[1] / "data" / "heldout_speakers.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


@pytest.fixture(scope="module")
def codec():
    return load_codec(None)


def test_default_model_is_rsq_8_layers_at_most_3_kbps(codec):
    assert codec.num_layers == 8 and codec.codebook_sizes == [256] * 8
    assert codec.latent_rate == 31.25 and codec.preset.name == "codec16k"
    assert [codec.bits_per_second(n) for n in (1, 2, 4, 8)] == [250, 500, 1000, 2000]
    assert type(codec.model.quantizer).__name__ == "ResidualSQ"
    # the HiFi-GAN always ships; config.json names the vocoder decode uses by default
    default = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["default_vocoder"]
    assert default in ("hifigan", "griffinlim")
    assert (codec.vocoder is None) == (default == "griffinlim")
    voc = load_codec(None, vocoder="hifigan").vocoder
    assert isinstance(voc, HifiGanVocoder) and voc.preset == codec.preset


def test_training_record_and_attributions():
    rec = json.loads((DEFAULT_MODEL_DIR / "TRAINING.json").read_text())
    assert rec["codec"]["config"]["model"]["quantizer"]["num_layers"] == 8
    assert rec["codec"]["step"] > 0 and rec["vocoder"]["steps"] > 0
    assert len(rec["commit"]) == 40
    trained = (DEFAULT_MODEL_DIR / "training_list.txt").read_text().split()
    assert len(trained) == rec["data"]["files"] > 0
    # only the CC-BY / public-domain corpora, no held-out speaker
    assert all(
        t.split("/")[1] in {"vctk16k", "vctk48k", "librispeech", "ljspeech", "cmu_arctic"} for t in trained
    )
    for spk in HELDOUT_SPEAKERS:
        corpus, who = spk.split("/")
        assert not any(t.split("/")[1] == corpus and f"/{who}/" in t for t in trained), spk
    text = (DEFAULT_MODEL_DIR / "ATTRIBUTION.md").read_text()
    for corpus in ("VCTK", "LibriSpeech", "LJSpeech", "CMU ARCTIC"):
        assert corpus in text


def test_more_layers_code_held_out_speech_better(codec, realaudio):
    """Mean held-out log-mel RMSE falls strictly at --layers 1 -> 2 -> 4 -> 8 (BENCHMARKS.md §3)."""
    files = speech_list("heldout", realaudio)[::5]
    curves = []
    for f in files:
        wave, _ = load_mono(f, 16000)
        ref = mel_features(wave, codec.preset)
        codes = codec.encode(torch.from_numpy(wave), 16000)
        row = []
        for n in (1, 2, 4, 8):
            dec = codec.decode(codes[:, :n])[0][..., : ref.shape[-1]]
            row.append(float(((dec - ref) ** 2).mean().sqrt()))
        curves.append(row)
    r1, r2, r4, r8 = np.mean(curves, axis=0)
    assert r1 > r2 > r4 > r8, (r1, r2, r4, r8)
    assert r8 < 0.9  # the same architecture untrained: 4.8 on the first held-out file


def test_cli_round_trip_on_the_default_model(realaudio, tmp_path):
    src = sorted((realaudio / "speech/vctk48k/p301").rglob("*.flac"))[0]  # held-out, 48 kHz
    codes, wav = tmp_path / "a.codes", tmp_path / "a.wav"
    code, out, err = run_cli("encode", src, codes)
    assert code == 0, err
    assert "8 of 8 layers, 2.000 kbps nominal" in out
    code, out, err = run_cli("decode", codes, wav, "--layers", "4", "--vocoder", "hifigan")
    assert code == 0, err
    assert "4 layers, 1.000 kbps, HiFi-GAN" in out
    a, b = sf.info(src), sf.info(wav)
    assert (b.samplerate, b.channels, b.frames) == (a.samplerate, a.channels, a.frames)
    y, _ = sf.read(wav)
    assert np.isfinite(y).all() and np.abs(y).max() > 1e-2


def test_export_default_retrains_the_codec_and_keeps_the_shipped_vocoder(realaudio, tmp_path):
    """tools/export_default.py with an exported vocoder folder (the shipped one): a new codec checkpoint
    is packaged with that vocoder unchanged, its training record, history and entropy tables."""
    import os
    import subprocess
    import sys

    from helpers import TINY_CODEC
    from safetensors.torch import load_file

    from sqcodec.model import build_model
    from sqcodec.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(TINY_CODEC)
    ckpt = tmp_path / "exp" / "checkpoints" / "step_00000012.pt"
    cfg = {"model": TINY_CODEC, "data": {"preset": "codec16k"}, "train": {"device": "cpu"}}
    save_checkpoint({"step": 12, "model": model.state_dict(), "config": cfg}, ckpt)
    out = tmp_path / "default"
    tool = DEFAULT_MODEL_DIR.parents[2] / "tools" / "export_default.py"
    args = ["--codec", str(tmp_path / "exp"), "--checkpoint", str(ckpt), "--vocoder", str(DEFAULT_MODEL_DIR)]
    args += ["--out", str(out), "--model-id", "tiny-export", "--default-vocoder", "griffinlim"]
    env = {**os.environ, "SQCODEC_REALAUDIO": str(realaudio), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, str(tool), *args, "--history", "resumed once", "--trained-on", "CPU, 1 thread"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]

    codec = load_codec(out)
    assert codec.model_id == "tiny-export" and codec.num_layers == TINY_CODEC["quantizer"]["num_layers"]
    record = json.loads((out / "TRAINING.json").read_text())
    shipped = json.loads((DEFAULT_MODEL_DIR / "TRAINING.json").read_text())
    assert record["codec"]["history"] == "resumed once" and record["codec"]["step"] == 12
    assert record["codec"]["trained_on"] == "CPU, 1 thread"
    assert record["codec"]["checkpoint"] == ckpt.name and record["default_vocoder"] == "griffinlim"
    assert record["vocoder"] == shipped["vocoder"]  # the vocoder's own training record is kept
    new, old = (
        load_file(str(out / "vocoder.safetensors")),
        load_file(str(DEFAULT_MODEL_DIR / "vocoder.safetensors")),
    )
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in old)
    assert (out / "training_list.txt").read_text() == (DEFAULT_MODEL_DIR / "training_list.txt").read_text()
    assert record["entropy_tables"]["files"] == shipped["data"]["files"]
    assert (out / "entropy_tables.json").is_file() and "LibriSpeech" in (out / "ATTRIBUTION.md").read_text()


def test_shipped_hifigan_resynthesises_held_out_speech(realaudio):
    """The shipped HiFi-GAN on the ground-truth mels of 4 held-out files: mean log-mel L1 of its output
    below 0.6 (the 41,751-step generator scores 0.37-0.43 per file, the 16,449-step one 0.44-0.49, the
    3,449-step one 0.90-1.11; an untrained V3 generator 1.4 on the first file). BENCHMARKS.md §3.1."""
    from sqcodec.audio.features import MelFrontEnd
    from sqcodec.vocoder import load_vocoder

    vocoder = load_vocoder(DEFAULT_MODEL_DIR)
    frontend = MelFrontEnd(vocoder.preset)
    errors = []
    for f in speech_list("heldout", realaudio)[::8]:
        wave = torch.from_numpy(load_mono(f, 16000)[0].astype(np.float32))[None]
        mel = frontend(wave)
        out = vocoder.synthesize(mel)[..., : wave.shape[-1]]
        errors.append(float((frontend(out) - mel).abs().mean()))
    assert len(errors) == 4 and np.mean(errors) < 0.6, errors
