"""Hostile and unusual audio inputs through the ``sqcodec encode`` / ``decode`` CLI (DESIGN §6).

The corpus is built by the test in ``tmp_path`` from real recordings (a LibriSpeech FLAC at 16 kHz and a
VCTK FLAC at 48 kHz): every sample format, rate and channel count libsndfile writes for WAV, the other
containers and codecs it reads (FLAC, AIFF, CAF, W64, RF64, Ogg Vorbis, Opus, MP3), WAV headers whose
fields lie (sizes, rate, channels, bits, format tag), plus broken files (truncated, empty, header only,
text, NaN/inf samples). Each case either succeeds (and ``decode``
restores rate, channels and length) or is refused with exactly one ``sqcodec: error: <file>: ...`` line
on stderr, exit code 1 and nothing (not even a temporary file) left in the output folder. The outcome of
every case is fixed in ``CASES``; ``pytest -s`` prints the table and the counts.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import TINY_CODEC, run_cli

from sqcodec.codec import Codec, save_codec
from sqcodec.model import build_model

TINY = TINY_CODEC
LIBRI = "speech/librispeech/test-other/2033/2033-164914-0000.flac"
VCTK48 = "speech/vctk48k/p228/p228_023.flac"
SECONDS = 1.5  # length of the clips cut from the recordings (keeps every case fast)


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_codec(Codec(build_model(TINY), "codec16k", model_id="tiny"), folder)
    return folder


@pytest.fixture(scope="module")
def speech(realaudio) -> dict[str, tuple[np.ndarray, int]]:
    """Mono float32 clips of real speech: ``{"16k": (wave, 16000), "48k": (wave, 48000)}``."""
    out = {}
    for key, rel in (("16k", LIBRI), ("48k", VCTK48)):
        data, sr = sf.read(str(realaudio / rel), dtype="float32", always_2d=True)
        start = int(0.5 * sr)  # skip leading silence
        out[key] = (np.ascontiguousarray(data[start : start + int(SECONDS * sr), 0]), sr)
    return out


RESULTS: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if RESULTS:
        width = max(map(len, RESULTS))
        print("\n\nhostile inputs: case -> outcome")
        for name, outcome in RESULTS.items():
            print(f"  {name:<{width}}  {outcome}")
        ok = sum(v == "succeeded" for v in RESULTS.values())
        refused = sum(v == "refused" for v in RESULTS.values())
        print(f"  succeeded: {ok}, cleanly refused: {refused}, other: {len(RESULTS) - ok - refused}")


# ------------------------------------------------------------------------------------------ the corpus
# Each maker writes one input file into ``d`` and returns its path; it gets the speech clips.

Maker = Callable[[Path, dict], Path]


def _resampled(speech: dict, sr: int) -> np.ndarray:
    import soxr

    wave, src = speech["48k"] if sr > 16000 else speech["16k"]
    return soxr.resample(wave, src, sr).astype(np.float32) if sr != src else wave


def _wav(name: str, subtype: str = "PCM_16", sr: int = 16000, channels: int = 1, fmt: str = "WAV") -> Maker:
    def make(d: Path, speech: dict) -> Path:
        wave = 0.5 * _resampled(speech, sr)
        # distinct, decorrelated channels: the speech delayed by a few samples and scaled
        data = np.stack([np.roll(wave, 7 * c) * (1 - 0.08 * c) for c in range(channels)], axis=1)
        p = d / name
        sf.write(str(p), data, sr, subtype=subtype, format=fmt)
        return p

    return make


def _lying_header(name: str, offset: int, fmt: str, value: int) -> Maker:
    """A valid 16 kHz PCM_16 WAV of speech with one field of its canonical 44-byte header overwritten."""

    def make(d: Path, speech: dict) -> Path:
        src = _wav("base.wav")(d, speech)
        data = bytearray(src.read_bytes())
        src.unlink()
        assert data[12:16] == b"fmt " and data[36:40] == b"data"
        struct.pack_into(fmt, data, offset, value)
        p = d / name
        p.write_bytes(bytes(data))
        return p

    return make


def _no_extension(d: Path, speech: dict) -> Path:
    p = d / "recording"
    sf.write(str(p), speech["16k"][0], 16000, subtype="PCM_16", format="WAV")
    return p


def _truncated(fraction: float | None = None, keep_bytes: int | None = None) -> Maker:
    def make(d: Path, speech: dict) -> Path:
        src = _wav("full.wav")(d, speech)
        data = src.read_bytes()
        src.unlink()
        n = keep_bytes if keep_bytes is not None else int(len(data) * fraction)
        p = d / "truncated.wav"
        p.write_bytes(data[:n])
        return p

    return make


def _truncated_flac(d: Path, speech: dict) -> Path:
    src = d / "full.flac"
    sf.write(str(src), speech["16k"][0], 16000, subtype="PCM_16", format="FLAC")
    data = src.read_bytes()
    src.unlink()
    p = d / "truncated.flac"
    p.write_bytes(data[: len(data) // 2])
    return p


def _empty(d: Path, speech: dict) -> Path:
    p = d / "empty.wav"
    p.write_bytes(b"")
    return p


def _header_only(d: Path, speech: dict) -> Path:
    p = d / "header_only.wav"
    sf.write(str(p), np.zeros((0, 1), np.float32), 16000, subtype="PCM_16", format="WAV")
    assert p.stat().st_size > 0
    return p


def _text(d: Path, speech: dict) -> Path:
    p = d / "notes.wav"
    p.write_text("This is not audio.\nJust some text that happens to be named .wav\n" * 20)
    return p


def _random_bytes(d: Path, speech: dict) -> Path:
    p = d / "noise.wav"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return p


def _riff_garbage(d: Path, speech: dict) -> Path:
    p = d / "garbage.wav"
    p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk" * 4)
    return p


def _flac_named_wav(d: Path, speech: dict) -> Path:
    p = d / "really_flac.wav"
    sf.write(str(p), speech["16k"][0], 16000, subtype="PCM_16", format="FLAC")
    return p


def _wav_named_mp3(d: Path, speech: dict) -> Path:
    p = d / "really_wav.mp3"
    sf.write(str(p), speech["16k"][0], 16000, subtype="PCM_16", format="WAV")
    return p


def _real_file(key: str) -> Maker:
    def make(d: Path, speech: dict) -> Path:
        wave, sr = speech[key]
        p = d / f"real_{key}.flac"
        sf.write(str(p), wave, sr, subtype="PCM_16", format="FLAC")
        return p

    return make


def _nonfinite(value: float, where: int = 1000) -> Maker:
    def make(d: Path, speech: dict) -> Path:
        wave = speech["16k"][0].copy()
        wave[where] = value
        p = d / "nonfinite.wav"
        sf.write(str(p), wave, 16000, subtype="FLOAT", format="WAV")
        return p

    return make


def _signal(name: str, fn: Callable[[int], np.ndarray], sr: int = 16000, subtype: str = "PCM_16") -> Maker:
    def make(d: Path, speech: dict) -> Path:
        p = d / name
        sf.write(str(p), fn(int(SECONDS * sr)).astype(np.float32), sr, subtype=subtype, format="WAV")
        return p

    return make


def _square(n: int) -> np.ndarray:
    return np.where((np.arange(n) // 40) % 2 == 0, 1.0, -1.0)


OK, REFUSED = "succeeded", "refused"

CASES: dict[str, tuple[Maker, str]] = {
    # sample formats
    "wav pcm_u8": (_wav("u8.wav", "PCM_U8"), OK),
    "wav pcm_16": (_wav("s16.wav", "PCM_16"), OK),
    "wav pcm_24": (_wav("s24.wav", "PCM_24"), OK),
    "wav pcm_32": (_wav("s32.wav", "PCM_32"), OK),
    "wav float32": (_wav("f32.wav", "FLOAT"), OK),
    "wav float64": (_wav("f64.wav", "DOUBLE"), OK),
    "wav mu-law": (_wav("ulaw.wav", "ULAW"), OK),
    "wav ima-adpcm": (_wav("adpcm.wav", "IMA_ADPCM"), OK),
    "flac pcm_24": (_wav("s24.flac", "PCM_24", fmt="FLAC"), OK),
    "aiff pcm_24": (_wav("s24.aiff", "PCM_24", fmt="AIFF"), OK),
    "caf float32": (_wav("f32.caf", "FLOAT", fmt="CAF"), OK),
    "w64 pcm_16": (_wav("s16.w64", "PCM_16", fmt="W64"), OK),
    "rf64 pcm_16": (_wav("s16.rf64", "PCM_16", fmt="RF64"), OK),
    "ogg vorbis": (_wav("v.ogg", "VORBIS", fmt="OGG"), OK),
    "ogg opus 48 kHz": (_wav("o.opus", "OPUS", sr=48000, fmt="OGG"), OK),
    "mp3": (_wav("m.mp3", "MPEG_LAYER_III", sr=44100, fmt="MP3"), OK),
    "real flac 16 kHz (LibriSpeech)": (_real_file("16k"), OK),
    "real flac 48 kHz (VCTK)": (_real_file("48k"), OK),
    # channel counts
    **{f"{c} channels": (_wav(f"ch{c}.wav", channels=c), OK) for c in range(1, 9)},
    # sample rates
    **{
        f"{sr / 1000:g} kHz": (_wav(f"sr{sr}.wav", sr=sr), OK)
        for sr in (8000, 11025, 16000, 22050, 44100, 48000, 96000)
    },
    # odd but valid content
    "silence (all zeros)": (_signal("silence.wav", np.zeros), OK),
    "full-scale square wave +-1.0": (_signal("square.wav", _square), OK),
    "float square wave +-1.0": (_signal("square_f.wav", _square, subtype="FLOAT"), OK),
    "float beyond full scale (+-4.0)": (_signal("loud.wav", lambda n: 4.0 * _square(n), subtype="FLOAT"), OK),
    "flac bytes named .wav": (_flac_named_wav, OK),
    "wav bytes named .mp3": (_wav_named_mp3, OK),
    "wav bytes, no file extension": (_no_extension, OK),
    # headers that lie (fields of the canonical 44-byte WAV header overwritten)
    "header: RIFF size 4 GB": (_lying_header("riff.wav", 4, "<I", 0xFFFFFFF0), OK),
    "header: data size 0xFFFFFFFF (streaming writer)": (
        _lying_header("stream.wav", 40, "<I", 0xFFFFFFFF),
        OK,
    ),
    "header: 13-bit samples in 16-bit words": (_lying_header("b13.wav", 34, "<H", 13), OK),
    "header: 1 Hz (a resampling bomb)": (_lying_header("sr1.wav", 24, "<I", 1), REFUSED),
    "header: 0 Hz": (_lying_header("sr0.wav", 24, "<I", 0), REFUSED),
    "header: 4 GHz": (_lying_header("sr4g.wav", 24, "<I", 0xFFFFFFFF), REFUSED),
    "header: 0 channels": (_lying_header("ch0.wav", 22, "<H", 0), REFUSED),
    "header: 1000 channels": (_lying_header("ch1000.wav", 22, "<H", 1000), REFUSED),
    "header: 0 bits per sample": (_lying_header("b0.wav", 34, "<H", 0), REFUSED),
    "header: unknown format tag": (_lying_header("tag.wav", 20, "<H", 99), REFUSED),
    # broken files
    "truncated wav at 90%": (_truncated(0.9), REFUSED),
    "truncated wav at 50%": (_truncated(0.5), REFUSED),
    "truncated wav at 10%": (_truncated(0.1), REFUSED),
    "truncated wav, odd byte count": (_truncated(keep_bytes=1001), REFUSED),
    "truncated wav inside the header (30 B)": (_truncated(keep_bytes=30), REFUSED),
    "truncated wav after the header (44 B)": (_truncated(keep_bytes=44), REFUSED),
    "truncated flac at 50%": (_truncated_flac, REFUSED),
    "zero-length file": (_empty, REFUSED),
    "header-only wav (0 frames)": (_header_only, REFUSED),
    "text file named .wav": (_text, REFUSED),
    "random bytes named .wav": (_random_bytes, REFUSED),
    "RIFF header + garbage": (_riff_garbage, REFUSED),
    "float wav with NaN": (_nonfinite(np.nan), REFUSED),
    "float wav with +inf": (_nonfinite(np.inf), REFUSED),
    "float wav with -inf (last sample)": (_nonfinite(-np.inf, where=-1), REFUSED),
    "too short (5 ms)": (_signal("short.wav", lambda n: np.zeros(80), sr=16000), REFUSED),
}


def check_case(tmp_path: Path, speech: dict, model: Path, name: str, maker: Maker) -> str:
    """Run one case through encode (and decode on success); returns 'succeeded' or 'refused' after
    checking the contract of that outcome."""
    src_dir, out_dir, dec_dir = tmp_path / "in", tmp_path / "out", tmp_path / "dec"
    for d in (src_dir, out_dir, dec_dir):
        d.mkdir()
    src = maker(src_dir, speech)
    codes = out_dir / (src.stem + ".codes")
    code, out, err = run_cli("encode", src, codes, "--model", model)
    if code != 0:
        lines = err.strip().splitlines()
        assert code == 1, f"{name}: exit code {code}\n{err}"
        assert len(lines) == 1, f"{name}: want one error line, got:\n{err}"
        assert lines[0].startswith("sqcodec: error: "), lines[0]
        assert str(src) in lines[0], f"{name}: the error does not name the file: {lines[0]}"
        assert list(out_dir.iterdir()) == [], f"{name}: left {list(out_dir.iterdir())}"
        return REFUSED
    assert err.strip() == "", f"{name}: succeeded but wrote to stderr:\n{err}"
    assert sorted(p.name for p in out_dir.iterdir()) == [codes.name]  # no temp files
    info = sf.info(str(src))
    wav = dec_dir / "decoded.wav"
    code, out, err = run_cli("decode", codes, wav, "--model", model, "--vocoder", "griffinlim")
    assert code == 0, f"{name}: decode failed:\n{err}"
    assert sorted(p.name for p in dec_dir.iterdir()) == [wav.name]
    got = sf.info(str(wav))
    assert (got.samplerate, got.channels, got.frames) == (info.samplerate, info.channels, info.frames), name
    y, _ = sf.read(str(wav), dtype="float32")
    assert np.isfinite(y).all()
    return OK


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(name, tmp_path, speech, model):
    maker, expected = CASES[name]
    outcome = check_case(tmp_path, speech, model, name, maker)
    RESULTS[name] = outcome
    assert outcome == expected, f"{name}: expected {expected}, got {outcome}"


@pytest.mark.parametrize(
    ("maker", "want", "unwanted"),
    [
        (_nonfinite(np.nan, where=1000), "first at 0.06 s", None),  # sample 1000 of 16 kHz
        (_nonfinite(-np.inf, where=-1), "first at 1.50 s", None),  # the last sample of 1.5 s
        (_signal("short.wav", lambda n: np.zeros(80), sr=16000), "too short: 80 samples", "resampl"),
        (_signal("short8k.wav", lambda n: np.zeros(100), sr=8000), "after resampling", None),
        (_lying_header("sr1.wav", 24, "<I", 1), "implausible sample rate 1 Hz", None),
    ],
    ids=["nan-position", "inf-position", "short-no-resampling", "short-resampled", "rate-1-hz"],
)
def test_refusal_messages_are_accurate(tmp_path, speech, model, maker, want, unwanted):
    """The one-line reason states facts about the file: where the bad samples are, and "after
    resampling" only when the file was resampled."""
    src = maker(tmp_path, speech)
    code, _, err = run_cli("encode", src, tmp_path / "x.codes", "--model", model)
    assert code == 1 and want in err, err
    assert unwanted is None or unwanted not in err, err


def test_refused_output_keeps_existing_file_and_folder_clean(tmp_path, speech, model):
    """A refused input never touches an output that already exists (even with --force)."""
    src = _nonfinite(np.nan)(tmp_path, speech)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    codes = out_dir / "x.codes"
    codes.write_bytes(b"previous result")
    code, _, err = run_cli("encode", src, codes, "--model", model, "--force")
    assert code == 1 and len(err.strip().splitlines()) == 1 and str(src) in err
    assert codes.read_bytes() == b"previous result"
    assert sorted(p.name for p in out_dir.iterdir()) == ["x.codes"]


def test_directory_with_hostile_files(tmp_path, speech, model):
    """A folder mixing good and bad files: the good ones are coded, each bad one gets one line, the
    summary line counts them, exit code 1, and no output or temp file exists for a bad one."""
    src = tmp_path / "in"
    src.mkdir()
    good = [_wav("a.wav")(src, speech), _real_file("48k")(src, speech)]
    bad = [_empty(src, speech), _text(src, speech), _nonfinite(np.inf)(src, speech)]
    out = tmp_path / "out"
    code, _, err = run_cli("encode", src, out, "--model", model)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == len(bad) + 1, err
    assert all(line.startswith("sqcodec: error: ") for line in lines)
    assert lines[-1] == f"sqcodec: error: {len(bad)} of {len(good) + len(bad)} files failed"
    for p in bad:
        assert sum(str(p) in line for line in lines) == 1, (p, err)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.stem + ".codes" for p in good)


@pytest.mark.slow
def test_ten_minutes_of_low_level_noise(tmp_path, model):
    """A 10-minute 8 kHz file (streamed in blocks) encodes, and decodes to the same rate and length."""
    sr, seconds = 8000, 600
    src = tmp_path / "gen" / "long.wav"
    src.parent.mkdir()
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(src), "w", sr, 1, subtype="PCM_16", format="WAV") as f:
        for _ in range(seconds // 60):
            f.write((1e-3 * rng.standard_normal(60 * sr)).astype(np.float32))
    name = "10 min low-level noise at 8 kHz"
    RESULTS[name] = check_case(tmp_path, {}, model, name, lambda d, s: Path(shutil.move(src, d / src.name)))
    assert RESULTS[name] == OK
