"""The codec CLI (sqcodec.cli_codec): encode / decode / info, errors, --force, directory mode."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import TINY_CODEC, run_cli

from sqcodec.bitstream import read_header
from sqcodec.codec import Codec, save_codec
from sqcodec.model import build_model

TINY = TINY_CODEC
LIBRI = "speech/librispeech/test-other/2033/2033-164914-0000.flac"
STEREO_44K = "env/urbansound8k/car_horn/100648-1-0-0.flac"


def _export(folder, seed: int, model_id: str):
    torch.manual_seed(seed)
    model = build_model(TINY)
    save_codec(Codec(model, "codec16k", model_id=model_id), folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return _export(root / "tiny", 0, "tiny"), _export(root / "other", 1, "other")


def assert_one_line_error(code, err, name):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sqcodec: error: ") and name in lines[0], lines[0]


def test_encode_info_decode(models, realaudio, tmp_path):
    model, _ = models
    src = realaudio / STEREO_44K
    codes = tmp_path / "a.codes"
    code, out, err = run_cli("encode", src, codes, "--model", model, "--layers", "2")
    assert code == 0, err
    assert "kbps" in out and "2 of 3 layers" in out and "0.250 kbps nominal" in out  # 31.25 * 2 * 4 bits
    code, out, err = run_cli("info", codes, "--json")
    assert code == 0, err
    info = json.loads(out)
    h = read_header(codes)
    src_info = sf.info(str(src))
    assert info["layers"] == h["layers"] == 2
    assert info["codebook_sizes"] == [16, 16]
    assert info["orig_sample_rate"] == src_info.samplerate == 44100
    assert info["orig_channels"] == 2 and info["orig_length"] == src_info.frames
    assert info["nominal_bps"] == pytest.approx(250.0)
    assert info["file_bytes"] == codes.stat().st_size
    assert info["actual_bps"] == pytest.approx(codes.stat().st_size * 8 / info["duration"])
    assert info["model_id"] == "tiny" and info["preset"] == "codec16k"
    code, out, err = run_cli("info", codes)
    assert code == 0 and "nominal bitrate" in out and "0.250 kbps" in out
    wav = tmp_path / "a.wav"
    code, out, err = run_cli(
        "decode", codes, wav, "--model", model, "--layers", "1", "--vocoder", "griffinlim"
    )
    assert code == 0, err
    assert "1 layers" in out and "0.125 kbps" in out
    got = sf.info(str(wav))
    assert (got.samplerate, got.channels, got.frames) == (44100, 2, src_info.frames)
    code, _, err = run_cli("decode", codes, tmp_path / "b.wav", "--model", model, "--layers", "3")
    assert_one_line_error(code, err, str(codes))
    assert not (tmp_path / "b.wav").exists()


def test_bit_flip_gives_one_clean_line(models, realaudio, tmp_path):
    model, _ = models
    codes = tmp_path / "a.codes"
    assert run_cli("encode", realaudio / LIBRI, codes, "--model", model)[0] == 0
    data = bytearray(codes.read_bytes())
    data[len(data) // 2 + 40] ^= 0x10
    codes.write_bytes(bytes(data))
    code, _, err = run_cli("decode", codes, tmp_path / "a.wav", "--model", model)
    assert_one_line_error(code, err, str(codes))
    assert "CRC" in err
    assert not (tmp_path / "a.wav").exists()
    code, _, err = run_cli("info", codes)
    assert_one_line_error(code, err, str(codes))


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" * 4)
    nan = tmp_path / "nan.wav"
    x = np.zeros(16000, np.float32)
    x[100] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(100, np.float32), 16000)
    return [empty, corrupt, nan, short]


def test_bad_audio_fails_cleanly(models, tmp_path):
    model, _ = models
    for bad in _bad_inputs(tmp_path):
        out = tmp_path / "out" / (bad.stem + ".codes")
        out.parent.mkdir(exist_ok=True)
        code, _, err = run_cli("encode", bad, out, "--model", model)
        assert_one_line_error(code, err, str(bad))
        assert not out.exists()
        assert list(out.parent.iterdir()) == []  # no temporary file left either


def test_force(models, realaudio, tmp_path):
    model, other = models
    codes = tmp_path / "a.codes"
    assert run_cli("encode", realaudio / LIBRI, codes, "--model", model)[0] == 0
    before = codes.read_bytes()
    code, _, err = run_cli("encode", realaudio / LIBRI, codes, "--model", other)
    assert_one_line_error(code, err, str(codes))
    assert "--force" in err and codes.read_bytes() == before
    code, _, err = run_cli("encode", realaudio / LIBRI, codes, "--model", other, "--force")
    assert code == 0, err
    assert codes.read_bytes() != before and read_header(codes)["model_id"] == "other"
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"keep me")
    code, _, err = run_cli("decode", codes, wav, "--model", other)
    assert_one_line_error(code, err, str(wav))
    assert wav.read_bytes() == b"keep me"


def test_codes_from_another_model_are_refused(models, realaudio, tmp_path):
    model, other = models
    codes = tmp_path / "a.codes"
    assert run_cli("encode", realaudio / LIBRI, codes, "--model", other)[0] == 0
    code, _, err = run_cli("decode", codes, tmp_path / "a.wav", "--model", model)
    assert_one_line_error(code, err, str(codes))
    assert "'other'" in err
    assert not (tmp_path / "a.wav").exists()


def test_no_model_points_to_option(realaudio, tmp_path, monkeypatch):
    import sqcodec.codec

    monkeypatch.setattr(sqcodec.codec, "DEFAULT_MODEL_DIR", tmp_path / "no_default")
    code, _, err = run_cli("encode", realaudio / LIBRI, tmp_path / "a.codes")
    assert_one_line_error(code, err, "--model")
    assert not (tmp_path / "a.codes").exists()


def test_directory_mode_mirrors_tree(models, realaudio, tmp_path):
    model, _ = models
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(realaudio / LIBRI, src / "top.flac")
    shutil.copy(realaudio / STEREO_44K, src / "sub" / "horn.flac")
    shutil.copy(realaudio / LIBRI, src / "sub" / "deeper" / "again.flac")
    (src / "notes.txt").write_text("not audio")
    flat = tmp_path / "flat"
    code, _, err = run_cli("encode", src, flat, "--model", model)
    assert code == 0, err
    assert sorted(p.relative_to(flat).as_posix() for p in flat.rglob("*") if p.is_file()) == ["top.codes"]
    out = tmp_path / "out"
    code, _, err = run_cli("encode", src, out, "--model", model, "--recursive", "--jobs", "2")
    assert code == 0, err
    want = ["sub/deeper/again.codes", "sub/horn.codes", "top.codes"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == want
    # again without --force: every file is refused, nothing changes
    code, _, err = run_cli("encode", src, out, "--model", model, "--recursive")
    assert code == 1 and err.count("--force") == 3
    wavs = tmp_path / "wavs"
    code, _, err = run_cli("decode", out, wavs, "--model", model, "--recursive")
    assert code == 0, err
    got = sorted(p.relative_to(wavs).as_posix() for p in wavs.rglob("*") if p.is_file())
    assert got == ["sub/deeper/again.wav", "sub/horn.wav", "top.wav"]
    assert sf.info(str(wavs / "sub" / "horn.wav")).channels == 2
