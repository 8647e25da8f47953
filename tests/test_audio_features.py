"""Mel presets against independent librosa/numpy/torchaudio references built from each paper's parameters.

The references below never call sqcodec's front-end: they follow the reference code of each preset
(librosa.load with soxr_hq, librosa.stft / melspectrogram / amplitude_to_db, np.pad reflect,
torchaudio.transforms.MelSpectrogram) on real recordings. Two tolerances: the float64 torch path must
equal the reference to 1e-7 (same algorithm), the default float32 path to 2e-4 in log units (<= 0.002 dB)
(float32 FFT rounding on near-silent bins).
"""

from __future__ import annotations

import math
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from sqcodec.audio import (
    PRESETS,
    AudioError,
    MelFrontEnd,
    MelPreset,
    get_preset,
    mel_features,
    mel_filterbank,
    to_db,
    wave_to_features,
)

VCTK = "speech/vctk48k/p255/p255_367.flac"  # 48 kHz, 4.95 s
ZS = "speech/zerospeech2019_english/S003_1178890909.flac"  # 16 kHz, 3.97 s
LIBRI = "speech/librispeech/test-other/2033/2033-164914-0005.flac"  # 16 kHz, 3.51 s
US_SHORT = "env/urbansound8k/car_horn/162540-1-0-0.flac"  # 22.05 kHz mono, 0.36 s
US_STEREO = "env/urbansound8k/air_conditioner/100852-0-0-0.flac"  # 44.1 kHz stereo, 4 s


def _ref_load(path: Path, sr: int) -> np.ndarray:
    y, _ = librosa.load(path, sr=sr, mono=True, res_type="soxr_hq", dtype=np.float64)
    return y


def _slaney(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float64)


def _check(ours32: np.ndarray, ours64: np.ndarray, ref: np.ndarray, tol32: float = 2e-4) -> None:
    assert ours32.dtype == np.float32
    assert ours32.shape == ref.shape == ours64.shape
    assert np.abs(ours64 - ref).max() < 1e-7
    assert np.abs(ours32 - ref).max() < tol32


def _torch64(y: np.ndarray, preset: str) -> np.ndarray:
    return mel_features(torch.from_numpy(y), preset).numpy()


# ---------------------------------------------------------------------------------------- filterbank
@pytest.mark.parametrize("name", list(PRESETS))
def test_slaney_filterbank_matches_librosa(name: str) -> None:
    p = PRESETS[name]
    ours = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax)
    ref = _slaney(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax)
    assert ours.shape == (p.n_mels, p.n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


def test_htk_filterbank_matches_librosa() -> None:
    ours = mel_filterbank(16000, 512, 40, 20.0, 7000.0, scale="htk", norm=None)
    ref = librosa.filters.mel(
        sr=16000, n_fft=512, n_mels=40, fmin=20, fmax=7000, htk=True, norm=None, dtype=np.float64
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------------------------------- presets
def test_vctk_matches_parallelwavegan_logmelfilterbank(realaudio: Path) -> None:
    path = realaudio / VCTK
    y = _ref_load(path, 24000)
    spc = np.abs(
        librosa.stft(y, n_fft=2048, hop_length=300, win_length=1200, window="hann", pad_mode="reflect")
    )
    ref = np.log10(np.maximum(1e-10, _slaney(24000, 2048, 80, 80, 7600) @ spc))
    _check(wave_to_features(path, "vctk"), _torch64(y, "vctk"), ref)
    assert ref.shape == (80, len(y) // 300 + 1)


def test_zerospeech_matches_sqvae_preprocess(realaudio: Path) -> None:
    path = realaudio / ZS
    y = _ref_load(path, 16000)
    wav = y / np.abs(y).max() * 0.999
    wav = scipy.signal.lfilter([1, -0.97], [1], wav)
    mel = librosa.feature.melspectrogram(
        y=wav,
        sr=16000,
        n_fft=2048,
        hop_length=160,
        win_length=400,
        n_mels=80,
        fmin=50,
        power=1,
        pad_mode="reflect",
    )
    logmel = librosa.amplitude_to_db(mel, top_db=80)  # ref=1, amin=1e-5
    ref = logmel / 80 + 1
    assert (ref == ref.min()).sum() > 0  # the top-dB clip is active on this utterance
    _check(wave_to_features(path, "zerospeech"), _torch64(y, "zerospeech"), ref)
    # gain invariance: peak normalisation makes the features independent of the input level
    np.testing.assert_allclose(_torch64(0.3 * y, "zerospeech"), _torch64(y, "zerospeech"), atol=1e-9)


def _urbansound_ref(y: np.ndarray) -> np.ndarray:
    y = np.pad(y, (0, max(0, 88200 - len(y))))[:88200]
    y = np.pad(y, (384, 384), mode="reflect")
    spec = librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=False)
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    return np.log(np.maximum(_slaney(22050, 1024, 80, 0, 8000) @ mag, 1e-5))


@pytest.mark.parametrize("rel", [US_SHORT, US_STEREO])
def test_urbansound_matches_sound_generation_audio2mel(realaudio: Path, rel: str) -> None:
    path = realaudio / rel
    y = _ref_load(path, 22050)
    ref = _urbansound_ref(y)
    assert ref.shape == (80, 344)
    _check(wave_to_features(path, "urbansound"), _torch64(y, "urbansound"), ref)


def test_urbansound_is_80x344_for_any_length(realaudio: Path) -> None:
    y = _ref_load(realaudio / US_SHORT, 22050)
    long = np.tile(y, 40)[:100000]  # > 4 s: cropped
    for wave in (y[:1000], long):
        ours = wave_to_features(wave.astype(np.float32), "urbansound")
        assert ours.shape == (80, 344)
        assert np.abs(ours - _urbansound_ref(wave)).max() < 1e-4
    assert PRESETS["urbansound"].num_frames(1) == PRESETS["urbansound"].num_frames(10**6) == 344


def test_codec16k_matches_speechbrain_hifigan_mel(realaudio: Path) -> None:
    torchaudio = pytest.importorskip("torchaudio")
    path = realaudio / LIBRI
    y = _ref_load(path, 16000)
    mel_tf = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000,
        n_fft=1024,
        win_length=1024,
        hop_length=256,
        n_mels=80,
        f_min=0.0,
        f_max=8000.0,
        power=1,
        normalized=False,
        norm="slaney",
        mel_scale="slaney",
    ).double()
    ref_sb = torch.log(torch.clamp(mel_tf(torch.from_numpy(y)), min=1e-5)).numpy()
    spec = np.abs(
        librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, center=True, pad_mode="reflect")
    )
    ref_lr = np.log(np.maximum(_slaney(16000, 1024, 80, 0, 8000) @ spec, 1e-5))
    assert ref_sb.shape == (80, len(y) // 256 + 1)
    ours = wave_to_features(path, "codec16k")
    assert np.abs(ours - ref_sb).max() < 1e-4  # torchaudio builds its filterbank in float32
    _check(ours, _torch64(y, "codec16k"), ref_lr)


def test_codec16k_has_no_per_file_dependence(realaudio: Path) -> None:
    """Chunking must not change features: frames whose window lies in a chunk equal the full file's."""
    p = PRESETS["codec16k"]
    assert not p.per_file and p.normalisation == "none"
    y = torch.from_numpy(_ref_load(realaudio / LIBRI, 16000))
    full = mel_features(y, p)
    start, stop = 40 * 256, 120 * 256  # chunk on hop boundaries
    chunk = mel_features(y[start:stop], p)
    edge = p.n_fft // 2 // p.hop_length  # frames touching the chunk's reflect padding
    torch.testing.assert_close(
        chunk[:, edge:-edge], full[:, 40 + edge : 40 + chunk.shape[1] - edge], atol=1e-5, rtol=0
    )
    # no gain normalisation either: halving the input shifts every unclipped bin by ln(0.5)
    above = full + math.log(0.5) > math.log(p.floor) + 1e-3
    half = mel_features(0.5 * y, p)
    torch.testing.assert_close(half[above], (full + math.log(0.5))[above], atol=2e-4, rtol=0)


# ------------------------------------------------------------------------------- shapes and metadata
def test_frame_counts_and_rates() -> None:
    for name, p in PRESETS.items():
        for n in (p.min_samples + 3, 16000, 16001, 48123):
            assert mel_features(torch.zeros(n), p).shape == (p.n_mels, p.num_frames(n)), name
    assert PRESETS["codec16k"].frame_rate == 62.5
    assert PRESETS["codec16k"].num_frames(16000) == 16000 // 256 + 1
    assert PRESETS["vctk"].frame_rate == 80.0
    assert PRESETS["zerospeech"].frame_rate == 100.0
    assert 256 == 8 * 8 * 2 * 2 == PRESETS["codec16k"].hop_length  # HiFi-GAN V1 upsampling product


def test_batched_equals_per_item_and_float32_out(realaudio: Path) -> None:
    y = torch.from_numpy(_ref_load(realaudio / LIBRI, 16000)).float()[:32000]
    batch = torch.stack([y, 0.5 * y.flip(0), y.roll(1234)])
    for name in PRESETS:
        out = mel_features(batch, name)
        assert out.dtype == torch.float32 and out.shape[:2] == (3, 80)
        for i in range(3):
            torch.testing.assert_close(out[i], mel_features(batch[i], name), atol=1e-5, rtol=0)
    assert mel_features(batch.view(3, 1, -1), "codec16k").shape[:3] == (3, 1, 80)
    assert torch.equal(mel_features(batch, "vctk"), mel_features(batch, "vctk"))  # deterministic


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(realaudio: Path) -> None:
    y = torch.from_numpy(_ref_load(realaudio / LIBRI, 16000)).float()
    for name in PRESETS:
        cpu = mel_features(y, name)
        gpu = mel_features(y.cuda(), name)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-4, rtol=0)


def test_to_db_undoes_each_scaling(realaudio: Path) -> None:
    y = _ref_load(realaudio / LIBRI, 16000)
    for name, p in PRESETS.items():
        wave = librosa.resample(y, orig_sr=16000, target_sr=p.sample_rate, res_type="soxr_hq")
        x = wave / np.abs(wave).max() * p.peak_normalise if p.peak_normalise else wave
        if p.preemphasis:
            x = scipy.signal.lfilter([1, -p.preemphasis], [1], x)
        x = np.pad(x, (0, max(0, (p.fixed_length or 0) - len(x))))[: p.fixed_length or None]
        if p.pad:
            x = np.pad(x, (p.pad, p.pad), mode="reflect")
        spec = librosa.stft(
            x,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            win_length=p.win_length,
            center=p.center,
            pad_mode="reflect",
        )
        mel = _slaney(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax) @ np.sqrt(
            np.abs(spec) ** 2 + p.magnitude_eps
        )
        want = 20 * np.log10(np.maximum(mel, p.floor))
        got = to_db(_torch64(wave, name), p)
        keep = want > want.max() - 80  # outside zerospeech's top-dB clip
        assert keep.mean() > 0.5
        assert np.abs(got - want)[keep].max() < 1e-5, name
    tensor = to_db(torch.zeros(80, 3), "zerospeech")
    assert isinstance(tensor, torch.Tensor) and torch.all(tensor == -80)


def test_preset_metadata_and_roundtrip() -> None:
    assert PRESETS["vctk"].normalisation == "standardise"
    assert {PRESETS[n].normalisation for n in ("zerospeech", "urbansound", "codec16k")} == {"none"}
    assert PRESETS["zerospeech"].per_file and PRESETS["urbansound"].per_file
    for p in PRESETS.values():
        assert get_preset(p.to_dict()) == p
        assert get_preset(p.name) is p
    assert PRESETS["urbansound"].with_normalisation("standardise").normalisation == "standardise"
    with pytest.raises(KeyError, match="unknown mel preset"):
        get_preset("nope")
    with pytest.raises(ValueError):
        MelPreset("bad", 16000, 512, 1024, 128, 80, 0.0, 8000.0)  # win > n_fft
    assert "codec16k" in repr(MelFrontEnd("codec16k"))


def test_too_short_and_bad_arrays_raise() -> None:
    with pytest.raises(AudioError, match="too short for mel preset 'codec16k'"):
        wave_to_features(np.zeros(100, np.float32), "codec16k")
    with pytest.raises(AudioError, match="NaN"):
        wave_to_features(np.array([0.0, np.nan] * 1000), "codec16k")
    with pytest.raises(ValueError, match="too short"):
        mel_features(torch.zeros(10), "vctk")
