"""Log-mel front-ends: the paper-exact presets (DESIGN §3) and the default codec's, in torch.

A :class:`MelPreset` names every parameter of a front-end; :data:`PRESETS` holds

========== ========= ================================ =============== =====================================
preset     rate      window / hop / FFT               mels, band      scaling
========== ========= ================================ =============== =====================================
vctk       24 kHz    1200 / 300 / 2048, centred       80, 80-7600 Hz  log10(max(mel, 1e-10)); standardise
                     (reflect)                                        with train stats (:mod:`.stats`)
zerospeech 16 kHz    400 / 160 / 2048, centred        80, 50-8000 Hz  peak 0.999, pre-emphasis 0.97,
                     (reflect)                                        20log10(max(mel,1e-5)), top 80 dB per
                                                                      utterance, then /80 + 1
urbansound 22.05 kHz 1024 / 256 / 1024, reflect pad   80, 0-8000 Hz   pad/crop to 4 s, sqrt(re²+im²+1e-9),
                     384, not centred                                 ln(max(mel, 1e-5)); 80 x 344 frames
codec16k   16 kHz    1024 / 256 / 1024, centred       80, 0-8000 Hz   ln(max(mel, 1e-5)); nothing per file
                     (reflect)
========== ========= ================================ =============== =====================================

All use a periodic Hann window, magnitude (power 1) spectra and librosa's Slaney mel filterbank (Slaney
mel scale, Slaney area normalisation), built here in float64 from the formulas (:func:`mel_filterbank`;
the tests check it against ``librosa.filters.mel``).

Sources: ``vctk`` is ParallelWaveGAN's VCTK recipe (``logmelfilterbank``: ``librosa.stft`` with
``pad_mode="reflect"``, log10 with eps 1e-10, z-normalised with ``stats.h5``); ``zerospeech`` is sony/sqvae
``speech/preprocess.py`` (= bshall/ZeroSpeech), run with the librosa of its day, whose STFT padding was
``reflect`` (librosa >= 0.10 defaults to zeros); ``urbansound`` is liuxubo717/sound_generation
``audio2mel.py`` (jik876 HiFi-GAN STFT: manual reflect pad (n_fft-hop)/2, ``center=False``).

``codec16k`` is the default codec's front-end, SpeechBrain's HiFi-GAN convention for its 16 kHz LibriTTS
vocoder: ``torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, win_length=1024, hop_length=256,
f_min=0, f_max=8000, n_mels=80, power=1, norm="slaney", mel_scale="slaney")`` (``center=True``, reflect
pad) then ``log(clamp(x, 1e-5))``. Hop 256 = 8·8·2·2, the HiFi-GAN V1 upsampling product, so a frame
is 16 ms (62.5 frames/s) and T = floor(N/256) + 1. It has no per-file step (no peak normalisation, no
per-utterance top-dB clip, no statistics), so features do not depend on where a file is chunked: a frame
whose window lies inside a chunk is the same whether computed on the chunk or on the whole file.

``zerospeech`` normalises each waveform by its peak and clips each feature map at its own max - 80 dB, so
for it a zero-padded batch differs from per-utterance calls: run it one utterance at a time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .io import AudioError, load_mono, resample

__all__ = [
    "DEFAULT_PRESET",
    "MelFrontEnd",
    "MelPreset",
    "PRESETS",
    "get_preset",
    "mel_features",
    "mel_filterbank",
    "to_db",
    "to_linear",
    "wave_to_features",
]

LogKind = Literal["log10", "ln", "db"]


@dataclass(frozen=True)
class MelPreset:
    """Every parameter of a log-mel front-end. Feature = ``scale * log_kind(max(mel, floor)) + offset``.

    Pipeline (in this order): pad/crop to ``fixed_length`` samples (zeros at the end), peak-normalise to
    ``peak_normalise``, pre-emphasis ``y[n] = x[n] - a x[n-1]``, manual reflect pad of ``pad`` samples per
    side, STFT (``center`` with ``pad_mode``), magnitude ``sqrt(re² + im² + magnitude_eps)`` raised to
    ``power``, mel filterbank, log (``log10``, natural ``ln``, or ``db`` = 20·log10) with floor, per
    utterance clip at max - ``top_db`` (``db`` only), then ``scale`` and ``offset``.

    ``normalisation`` is metadata: the normalisation the preset's paper applies after this front-end
    (``"standardise"``: per-mel-bin mean/std from training statistics, :mod:`sqcodec.audio.stats`;
    ``"none"``). It is never applied by :class:`MelFrontEnd`.
    """

    name: str
    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float
    window: str = "hann"
    center: bool = True
    pad_mode: str = "reflect"
    pad: int = 0
    magnitude_eps: float = 0.0
    power: float = 1.0
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    log: LogKind = "ln"
    floor: float = 1e-5
    top_db: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    preemphasis: float = 0.0
    peak_normalise: float | None = None
    fixed_length: int | None = None
    normalisation: str = "none"
    description: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"preset {self.name!r}: need 0 < win_length <= n_fft")
        if self.hop_length <= 0 or self.n_mels <= 0 or self.sample_rate <= 0:
            raise ValueError(f"preset {self.name!r}: hop_length, n_mels and sample_rate must be positive")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"preset {self.name!r}: need 0 <= fmin < fmax <= sample_rate/2")
        if self.window != "hann":
            raise ValueError(f"preset {self.name!r}: only the (periodic) hann window is implemented")
        if self.log not in ("log10", "ln", "db"):
            raise ValueError(f"preset {self.name!r}: log must be log10, ln or db")
        if self.top_db is not None and self.log != "db":
            raise ValueError(f"preset {self.name!r}: top_db needs log='db'")
        if self.floor <= 0 or self.scale == 0:
            raise ValueError(f"preset {self.name!r}: floor must be > 0 and scale non-zero")
        if self.normalisation not in ("none", "standardise"):
            raise ValueError(f"preset {self.name!r}: normalisation must be 'none' or 'standardise'")

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def per_file(self) -> bool:
        """True when features depend on the whole file (peak normalisation, top-dB clip, fixed length)."""
        return self.peak_normalise is not None or self.top_db is not None or self.fixed_length is not None

    @property
    def min_samples(self) -> int:
        """Shortest waveform the STFT accepts (reflect padding needs more samples than it pads)."""
        if self.fixed_length is not None:
            return 1
        if self.center:
            return self.n_fft // 2 + 1 if self.pad_mode == "reflect" else 1
        return max(self.n_fft - 2 * self.pad, self.pad + 1)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` samples (at the preset's rate)."""
        n = self.fixed_length if self.fixed_length is not None else int(num_samples)
        if self.center:
            return n // self.hop_length + 1
        return (n + 2 * self.pad - self.n_fft) // self.hop_length + 1

    def with_normalisation(self, normalisation: str) -> MelPreset:
        """The same front-end with another normalisation tag (e.g. ``urbansound`` standardised)."""
        return dataclasses.replace(self, normalisation=normalisation)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for .codes headers, checkpoints and stats files)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MelPreset:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown MelPreset fields: {sorted(unknown)}")
        return cls(**d)


PRESETS: dict[str, MelPreset] = {
    p.name: p
    for p in (
        MelPreset(
            name="vctk",
            sample_rate=24000,
            n_fft=2048,
            win_length=1200,
            hop_length=300,
            n_mels=80,
            fmin=80.0,
            fmax=7600.0,
            log="log10",
            floor=1e-10,
            normalisation="standardise",
            description="SQ-VAE VCTK / ParallelWaveGAN vctk: 24 kHz, 50/12.5 ms, log10 mel (floor 1e-10), "
            "standardised with train stats",
        ),
        MelPreset(
            name="zerospeech",
            sample_rate=16000,
            n_fft=2048,
            win_length=400,
            hop_length=160,
            n_mels=80,
            fmin=50.0,
            fmax=8000.0,
            log="db",
            floor=1e-5,
            top_db=80.0,
            scale=1 / 80,
            offset=1.0,
            preemphasis=0.97,
            peak_normalise=0.999,
            description="SQ-VAE ZeroSpeech 2019 (sony/sqvae speech/preprocess.py): peak 0.999, "
            "pre-emphasis 0.97, dB top 80, /80 + 1",
        ),
        MelPreset(
            name="urbansound",
            sample_rate=22050,
            n_fft=1024,
            win_length=1024,
            hop_length=256,
            n_mels=80,
            fmin=0.0,
            fmax=8000.0,
            center=False,
            pad=384,
            magnitude_eps=1e-9,
            log="ln",
            floor=1e-5,
            fixed_length=88200,
            description="HQ-VAE UrbanSound8K (liuxubo717/sound_generation audio2mel.py): 4 s, "
            "HiFi-GAN STFT, ln mel; 80 x 344",
        ),
        MelPreset(
            name="codec16k",
            sample_rate=16000,
            n_fft=1024,
            win_length=1024,
            hop_length=256,
            n_mels=80,
            fmin=0.0,
            fmax=8000.0,
            log="ln",
            floor=1e-5,
            description="sqcodec default: SpeechBrain HiFi-GAN 16 kHz mel (torchaudio MelSpectrogram, "
            "slaney), ln(clamp 1e-5), no per-file normalisation",
        ),
    )
}

DEFAULT_PRESET = "codec16k"


def get_preset(preset: str | MelPreset | dict[str, Any]) -> MelPreset:
    """A preset from its name, a :class:`MelPreset`, or a dict written by :meth:`MelPreset.to_dict`."""
    if isinstance(preset, MelPreset):
        return preset
    if isinstance(preset, dict):
        return MelPreset.from_dict(preset)
    try:
        return PRESETS[preset]
    except KeyError:
        raise KeyError(f"unknown mel preset {preset!r}; known: {', '.join(PRESETS)}") from None


# ---------------------------------------------------------------------------------------------------
# Mel filterbank (Slaney's Auditory Toolbox formulas, as librosa implements them)


def hz_to_mel(freq: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """Hz to mel: HTK ``2595 log10(1 + f/700)`` or Slaney (linear below 1 kHz, log above)."""
    f = np.asarray(freq, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    if scale != "slaney":
        raise ValueError(f"unknown mel scale {scale!r}")
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    with np.errstate(divide="ignore"):
        log_part = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, f / f_sp)


def mel_to_hz(mels: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if scale != "slaney":
        raise ValueError(f"unknown mel scale {scale!r}")
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    scale: str = "slaney",
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filterbank, float64 ``(n_mels, n_fft // 2 + 1)``.

    Filter i rises from mel point i to i+1 and falls to i+2, the ``n_mels + 2`` points evenly spaced on the
    mel scale between ``fmin`` and ``fmax``; ``norm="slaney"`` scales it to unit area per Hz
    (``2 / (f_{i+2} - f_i)``). Matches ``librosa.filters.mel`` (its defaults are Slaney scale and norm).
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_pts = mel_to_hz(np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels + 2), scale)
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_pts[2:] - mel_pts[:-2]))[:, None]
    elif norm is not None:
        raise ValueError(f"unknown mel norm {norm!r}")
    return weights


# ---------------------------------------------------------------------------------------------------
# The front-end


class MelFrontEnd(nn.Module):
    """Waveform ``(..., samples)`` at ``preset.sample_rate`` -> features ``(..., n_mels, frames)``.

    Batched over any leading dims, on the waveform's device. Computes in float32 (float64 if given float64,
    which the tests use to check the algorithm to 1e-7). Deterministic (``torch.stft`` + a matmul).
    """

    def __init__(self, preset: str | MelPreset = DEFAULT_PRESET) -> None:
        super().__init__()
        self.preset = p = get_preset(preset)
        fb = mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax, p.mel_scale, p.mel_norm)
        self.register_buffer("filterbank", torch.from_numpy(fb), persistent=False)  # float64 master copy
        self.register_buffer(
            "window", torch.hann_window(p.win_length, periodic=True, dtype=torch.float64), persistent=False
        )

    def extra_repr(self) -> str:
        return f"preset={self.preset.name!r}"

    def forward(self, wave: Tensor) -> Tensor:
        p = self.preset
        x = wave if wave.dtype in (torch.float32, torch.float64) else wave.to(torch.float32)
        if x.dim() == 0:
            raise ValueError("waveform must have a time axis")
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        if p.fixed_length is not None:
            n = x.shape[-1]
            x = x[:, : p.fixed_length] if n >= p.fixed_length else F.pad(x, (0, p.fixed_length - n))
        if x.shape[-1] < p.min_samples:
            raise ValueError(
                f"waveform of {x.shape[-1]} samples is too short for mel preset {p.name!r} "
                f"(needs at least {p.min_samples} at {p.sample_rate} Hz)"
            )
        if p.peak_normalise is not None:
            peak = x.abs().amax(dim=-1, keepdim=True)
            x = torch.where(peak > 0, x / torch.where(peak > 0, peak, 1.0) * p.peak_normalise, x)
        if p.preemphasis:
            x = torch.cat([x[:, :1], x[:, 1:] - p.preemphasis * x[:, :-1]], dim=-1)
        if p.pad:
            x = F.pad(x.unsqueeze(1), (p.pad, p.pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            x,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            win_length=p.win_length,
            window=self.window.to(device=x.device, dtype=x.dtype),
            center=p.center,
            pad_mode=p.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        if p.magnitude_eps:
            mag = torch.sqrt(spec.real.square() + spec.imag.square() + p.magnitude_eps)
        else:
            mag = spec.abs()
        if p.power != 1.0:
            mag = mag.pow(p.power)
        mel = torch.matmul(self.filterbank.to(device=x.device, dtype=x.dtype), mag)
        mel = mel.clamp_min(p.floor)
        if p.log == "log10":
            feat = torch.log10(mel)
        elif p.log == "ln":
            feat = torch.log(mel)
        else:
            feat = 20.0 * torch.log10(mel)
            if p.top_db is not None:
                feat = torch.maximum(feat, feat.amax(dim=(-2, -1), keepdim=True) - p.top_db)
        if p.scale != 1.0 or p.offset != 0.0:
            feat = feat * p.scale + p.offset
        return feat.reshape(*lead, p.n_mels, feat.shape[-1])


@functools.lru_cache(maxsize=32)
def _frontend(preset: MelPreset, device: str) -> MelFrontEnd:
    return MelFrontEnd(preset).to(device)


def mel_features(wave: Tensor | np.ndarray, preset: str | MelPreset = DEFAULT_PRESET) -> Tensor:
    """Functional form of :class:`MelFrontEnd`: ``(..., samples)`` -> ``(..., n_mels, frames)``."""
    if isinstance(wave, np.ndarray):
        wave = torch.from_numpy(np.ascontiguousarray(wave))
    return _frontend(get_preset(preset), str(wave.device))(wave)


def wave_to_features(
    source: str | os.PathLike | np.ndarray | Tensor,
    preset: str | MelPreset = DEFAULT_PRESET,
    sample_rate: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """A file or a waveform -> float32 numpy ``(n_mels, frames)`` for ``preset``.

    Files are read with :func:`sqcodec.audio.io.load_mono` (validated, downmixed, soxr-resampled to the
    preset rate). Arrays are ``(samples,)`` or ``(channels, samples)`` (downmixed by mean) at
    ``sample_rate`` (default: the preset's rate). Fixed-length presets pad/crop inside the front-end.
    Raises :class:`AudioError` naming the file for bad audio, including audio too short for the STFT.
    """
    p = get_preset(preset)
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        wave, _ = load_mono(source, p.sample_rate)
    else:
        name = "<array>"
        arr = source.detach().cpu().numpy() if isinstance(source, Tensor) else np.asarray(source)
        if arr.ndim == 2:
            arr = arr.mean(axis=0)
        if arr.ndim != 1 or arr.size == 0:
            raise AudioError(
                name, f"want a non-empty (samples,) or (channels, samples) array, got {np.shape(source)}"
            )
        if not np.isfinite(arr).all():
            raise AudioError(name, "NaN/inf sample values")
        wave = (
            resample(arr, sample_rate, p.sample_rate) if sample_rate and sample_rate != p.sample_rate else arr
        )
        wave = wave.astype(np.float32, copy=False)
    if wave.shape[-1] < p.min_samples:
        raise AudioError(
            name,
            f"too short for mel preset {p.name!r}: {wave.shape[-1]} samples at {p.sample_rate} Hz "
            f"(needs at least {p.min_samples})",
        )
    x = torch.from_numpy(np.ascontiguousarray(wave))
    if device is not None:
        x = x.to(device)
    return mel_features(x, p).cpu().numpy().astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------
# Undoing the scaling (for dB metrics and Griffin-Lim)

_DB_PER_NEPER = 20.0 / math.log(10.0)


def to_db(features: Any, preset: str | MelPreset, stats: Any = None) -> Any:
    """Features -> 20·log10 of the linear-magnitude mel (numpy or torch, same shape).

    Undoes ``stats`` standardisation first when given (a :class:`sqcodec.audio.stats.FeatureStats`),
    then ``scale``/``offset`` (``zerospeech``: (f - 1)·80) and the log (log10: ×20; ln: ×20/ln 10).
    Floors and top-dB clips cannot be undone: clipped bins come back at the clip level
    (``vctk``: -200 dB, ``urbansound``/``codec16k``: -100 dB).
    """
    p = get_preset(preset)
    f = features
    if stats is not None:
        from .stats import destandardise

        f = destandardise(f, stats)
    if p.scale != 1.0 or p.offset != 0.0:
        f = (f - p.offset) / p.scale
    if p.log == "log10":
        return 20.0 * f
    if p.log == "ln":
        return _DB_PER_NEPER * f
    return f * 1.0


def to_linear(features: Any, preset: str | MelPreset, stats: Any = None) -> Any:
    """Features -> linear-magnitude mel (``10 ** (to_db / 20)``)."""
    db = to_db(features, preset, stats)
    return 10.0 ** (db / 20.0)
