"""A short speech-like clip made from scratch, so the demo needs no download or shared data.

A source-filter model: a glottal pulse train with a gliding pitch passed through vowel formant
resonators (/a/, /i/, /u/, /e/), separated by fricative-like noise bursts and short pauses.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

# (F1, F2, F3) in Hz of a few vowels, adult male averages
VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240), "e": (530, 1840, 2480)}


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * freq / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1.0 - r], a, x)


def make_clip(sr: int = 16000, seed: int = 0) -> np.ndarray:
    """About 3 s of mono float32 audio at ``sr`` peaking at 0.5."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    for i, vowel in enumerate(["a", "i", "u", "e", "a", "i"]):
        n = int(0.38 * sr)
        f0 = np.linspace(110 + 15 * i, 140 - 5 * i, n)
        phase = np.cumsum(f0 / sr)
        pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
        source = lfilter([1.0], [1.0, -0.95], pulses) + 0.01 * rng.standard_normal(n)
        voiced = sum(_resonator(source, f, 60 + 20 * k, sr) for k, f in enumerate(VOWELS[vowel]))
        voiced *= np.hanning(n)
        noise = _resonator(rng.standard_normal(int(0.08 * sr)), 4500, 1500, sr)
        noise *= np.hanning(noise.size) * 0.3
        parts += [voiced, np.zeros(int(0.03 * sr)), noise, np.zeros(int(0.04 * sr))]
    wave = np.concatenate(parts)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)
