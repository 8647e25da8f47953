"""Griffin-Lim: the explicit fallback vocoder (no training; much lower quality than HiFi-GAN).

Log-mel features -> linear-magnitude mel (:func:`sqcodec.audio.to_linear`) -> magnitude spectrogram by
non-negative least squares through the preset's own Slaney filterbank -> phase by Griffin-Lim
(Griffin & Lim 1984, with torchaudio's momentum variant). Only presets with centred STFTs and
power-1 magnitudes are invertible this way (codec16k, vctk, zerospeech without its pre-emphasis).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sqcodec.audio.features import get_preset, mel_filterbank, to_linear


def griffin_lim(features: Tensor | np.ndarray, preset: str = "codec16k", n_iter: int = 64) -> np.ndarray:
    """``(n_mels, frames)`` features of ``preset`` -> float32 waveform at the preset's rate."""
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
    # least squares through the filterbank, clamped to non-negative magnitudes
    spec = torch.linalg.lstsq(fb, mel).solution.clamp_min(0.0)
    gl = torchaudio.transforms.GriffinLim(
        n_fft=p.n_fft,
        win_length=p.win_length,
        hop_length=p.hop_length,
        power=1.0,
        n_iter=n_iter,
        rand_init=False,
    )
    wave = gl(spec)
    if p.preemphasis:
        from scipy.signal import lfilter

        return lfilter([1.0], [1.0, -p.preemphasis], wave.numpy()).astype(np.float32)
    return wave.numpy().astype(np.float32)
