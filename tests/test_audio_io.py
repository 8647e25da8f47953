"""Audio I/O: downmix/resample of real multichannel clips, atomic writes, and one-line errors on bad input."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from sqcodec.audio import AudioError, audio_info, load_mono, read_audio, wave_to_features, write_audio
from sqcodec.audio import io as audio_io

STEREO_44K = "env/urbansound8k/siren/102853-8-0-0.flac"  # 44.1 kHz, 2 ch, 4 s
STEREO_48K_24BIT = "env/urbansound8k/jackhammer/103074-7-0-0.flac"  # 48 kHz, 2 ch, PCM_24


def _tone(n: int = 8000, sr: int = 16000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)


# ------------------------------------------------------------------------------------- real files
def test_read_stereo_and_downmix_resample_like_librosa(realaudio: Path) -> None:
    path = realaudio / STEREO_44K
    data, sr = read_audio(path)
    assert sr == 44100 and data.dtype == np.float32 and data.shape == (2, 176400)
    assert not np.allclose(data[0], data[1])  # really two channels
    ref_raw, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(data, ref_raw.T)

    wave, info = load_mono(path, 22050)
    assert (info.sample_rate, info.channels, info.num_samples) == (44100, 2, 176400)
    assert info.duration == pytest.approx(4.0)
    assert any("downmixed" in n for n in info.notes) and any("44100 Hz -> 22050 Hz" in n for n in info.notes)
    ref, _ = librosa.load(path, sr=22050, mono=True, res_type="soxr_hq")  # mean of channels, then soxr HQ
    assert wave.dtype == np.float32 and wave.shape == ref.shape == (88200,)
    assert np.abs(wave - ref).max() < 1e-5


def test_load_24bit_48k_stereo_to_16k(realaudio: Path) -> None:
    path = realaudio / STEREO_48K_24BIT
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.subtype) == (48000, 2, "PCM_24")
    wave, info2 = load_mono(path, 16000)
    ref, _ = librosa.load(path, sr=16000, mono=True, res_type="soxr_hq")
    assert wave.shape == ref.shape and np.abs(wave - ref).max() < 1e-5
    same, info3 = load_mono(path)  # no target: native rate, only downmixed
    assert same.shape == (info.num_samples,) and info3.notes == ("downmixed 2 channels to mono",)


# ---------------------------------------------------------------------------------------- writing
@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_write_read_roundtrip(tmp_path: Path, ext: str) -> None:
    x = np.stack([_tone(), -_tone()])
    out = write_audio(tmp_path / f"a.{ext}", x, 16000)
    back, sr = read_audio(out)
    assert sr == 16000 and back.shape == (2, 8000)
    assert np.abs(back - x).max() <= 1.5 / 32768
    write_audio(tmp_path / "m.wav", torch.from_numpy(_tone()), 16000, subtype="FLOAT")  # torch, 1-D
    back, _ = read_audio(tmp_path / "m.wav")
    np.testing.assert_array_equal(back[0], _tone())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"a.{ext}", "m.wav"])  # no temp files


def test_write_clips_instead_of_wrapping(tmp_path: Path) -> None:
    write_audio(tmp_path / "c.wav", np.array([1.7, -3.0, 0.25], np.float32), 8000)
    back, _ = read_audio(tmp_path / "c.wav")
    assert back[0, 0] > 0.99 and back[0, 1] == -1.0 and back[0, 2] == 0.25


def test_failed_write_leaves_nothing_and_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.wav"
    target.write_bytes(b"old contents")
    bad = _tone()
    bad[10] = np.nan
    with pytest.raises(AudioError, match="out.wav: refusing to write NaN"):
        write_audio(target, bad, 16000)
    with pytest.raises(AudioError, match="does not support subtype"):
        write_audio(target, _tone(), 16000, subtype="VORBIS")
    with pytest.raises(AudioError, match="looks like \\(samples, channels\\)"):
        write_audio(target, np.zeros((16000, 2), np.float32), 16000)
    with pytest.raises(AudioError, match="unsupported output format"):
        write_audio(tmp_path / "out.xyz", _tone(), 16000)

    real_write = sf.write

    def crash(file, data, *args, **kwargs):  # writes part of the file, then dies (disk full, kill...)
        real_write(file, data[:100], *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(audio_io.sf, "write", crash)
    with pytest.raises(OSError, match="disk full"):
        write_audio(target, _tone(), 16000)
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


# -------------------------------------------------------------------------------------- bad input
def _bad_files(d: Path) -> dict[str, Path]:
    sf.write(d / "good.wav", _tone(), 16000, subtype="PCM_16")
    sf.write(d / "good.flac", _tone(), 16000, subtype="PCM_16")
    wav, flac = (d / "good.wav").read_bytes(), (d / "good.flac").read_bytes()
    files = {
        "truncated_wav": d / "trunc.wav",
        "truncated_flac": d / "trunc.flac",
        "empty": d / "empty.wav",
        "text": d / "notes.wav",
        "nan": d / "nan.wav",
        "inf": d / "inf.wav",
        "zero_length": d / "zero.wav",
        "missing": d / "missing.wav",
        "directory": d,
    }
    files["truncated_wav"].write_bytes(wav[: len(wav) // 2])
    files["truncated_flac"].write_bytes(flac[: len(flac) // 2])
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not audio, just text with a .wav name\n")
    for kind, value in (("nan", np.nan), ("inf", np.inf)):
        x = _tone()
        x[123] = value
        sf.write(files[kind], x, 16000, subtype="FLOAT")
    sf.write(files["zero_length"], np.zeros(0, np.float32), 16000)
    return files


EXPECT = {
    "truncated_wav": "truncated WAV",
    "truncated_flac": "cannot read audio",
    "empty": "empty file",
    "text": "cannot read audio",
    "nan": "NaN/inf",
    "inf": "NaN/inf",
    "zero_length": "no audio samples",
    "missing": "no such file",
    "directory": "not a regular file",
}


@pytest.mark.parametrize("kind", list(EXPECT))
def test_bad_input_raises_one_line_error_naming_file(tmp_path: Path, kind: str) -> None:
    path = _bad_files(tmp_path)[kind]
    for call in (read_audio, lambda p: load_mono(p, 16000), lambda p: wave_to_features(p, "codec16k")):
        with pytest.raises(AudioError) as err:
            call(path)
        msg = str(err.value)
        assert msg.startswith(f"{path}: ") and EXPECT[kind] in msg and "\n" not in msg
        assert isinstance(err.value, ValueError) and err.value.path == str(path)


def test_good_files_pass_the_checks(tmp_path: Path) -> None:
    _bad_files(tmp_path)
    for name in ("good.wav", "good.flac"):
        data, sr = read_audio(tmp_path / name)
        assert sr == 16000 and data.shape == (1, 8000)
