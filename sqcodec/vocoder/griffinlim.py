"""Griffin-Lim: the explicit fallback vocoder (no training; much lower quality than HiFi-GAN).

Log-mel features -> linear-magnitude mel (:func:`sqcodec.audio.to_linear`) -> magnitude spectrogram by
non-negative least squares through the preset's own Slaney filterbank -> phase by Griffin-Lim
(Griffin & Lim 1984, with torchaudio's momentum variant). Only presets with centred STFTs and
power-1 magnitudes are invertible this way (codec16k, vctk, zerospeech without its pre-emphasis).

Long inputs run in chunks of ``chunk_frames`` frames, each with ``overlap_frames`` of context on both
sides, cross-faded linearly over the ``2 * overlap_frames`` frames two chunks share: memory stays
bounded by the chunk (inputs up to ``chunk_frames + 2 * overlap_frames`` frames are one chunk).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sqcodec.audio.features import get_preset, mel_filterbank, to_linear


def griffin_lim(
    features: Tensor | np.ndarray,
    preset: str = "codec16k",
    n_iter: int = 64,
    length: int | None = None,
    chunk_frames: int = 4096,
    overlap_frames: int = 8,
) -> np.ndarray:
    """``(n_mels, frames)`` features of ``preset`` -> float32 waveform at the preset's rate
    (``length`` samples if given, else ``(frames - 1) * hop``)."""
    feats = np.asarray(features, dtype=np.float32)
    total = feats.shape[-1]
    if total <= chunk_frames + 2 * overlap_frames:
        return _griffin_lim(feats, preset, n_iter, length)
    hop = get_preset(preset).hop_length
    n_out = length if length is not None else (total - 1) * hop
    out = np.zeros(max(n_out, total * hop), dtype=np.float64)
    weight = np.zeros_like(out)
    fade = 2 * overlap_frames * hop
    for start in range(0, total, chunk_frames):
        stop = min(start + chunk_frames, total)
        a, b = max(0, start - overlap_frames), min(total, stop + overlap_frames)
        w = _griffin_lim(feats[:, a:b], preset, n_iter, (b - a) * hop).astype(np.float64)
        win = np.ones_like(w)
        if a > 0:
            win[:fade] = np.linspace(0.0, 1.0, fade, endpoint=False)
        if b < total:
            win[-fade:] = np.linspace(1.0, 0.0, fade, endpoint=False)
        out[a * hop : a * hop + len(w)] += w * win
        weight[a * hop : a * hop + len(w)] += win
    out = out / np.maximum(weight, 1e-8)
    return out[:n_out].astype(np.float32)


def _griffin_lim(features: np.ndarray, preset: str, n_iter: int, length: int | None) -> np.ndarray:
    import torchaudio

    p = get_preset(preset)
    if not p.center or p.power != 1.0:
        raise ValueError(f"preset {p.name!r}: Griffin-Lim needs a centred, power-1 STFT")
    mel = torch.as_tensor(
        np.asarray(to_linear(np.asarray(features, dtype=np.float32), p)), dtype=torch.float32
    )
    fb = torch.from_numpy(
        mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax, scale=p.mel_scale, norm=p.mel_norm)
    ).float()
    # minimum-norm least squares through the (wide) filterbank, clamped to non-negative magnitudes
    # (torch.linalg.lstsq's default CPU driver is not meant for under-determined systems: use pinv)
    spec = (torch.linalg.pinv(fb.double()) @ mel.double()).clamp_min(0.0).float()
    gl = torchaudio.transforms.GriffinLim(
        n_fft=p.n_fft,
        win_length=p.win_length,
        hop_length=p.hop_length,
        power=1.0,
        n_iter=n_iter,
        rand_init=False,
        length=None,
    )
    wave = gl(spec) if length is None else gl(spec)[..., :length]
    if length is not None and wave.shape[-1] < length:
        wave = torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
    if p.preemphasis:
        from scipy.signal import lfilter

        return lfilter([1.0], [1.0, -p.preemphasis], wave.numpy()).astype(np.float32)
    return wave.numpy().astype(np.float32)
