"""Signal processing for MUSHRA stimuli: band-limited anchors, noise anchors, fades and loudness.

* Low-pass anchors (ITU-R BS.1534-3: 3.5 kHz "low anchor", 7 kHz "mid anchor") use an elliptic
  low-pass (0.05 dB pass-band ripple, 90 dB stop-band attenuation, stop band from 1.05 x the cut-off)
  applied forwards and backwards (``sosfiltfilt``): zero phase, so the anchor stays time-aligned with
  the reference, and twice the attenuation of one pass.
* Noise anchor: the reference plus white Gaussian noise at a fixed SNR (mean-square ratio over the
  whole stimulus), from a seeded generator.
* Loudness: ITU-R BS.1770-4 integrated loudness of a mono signal (K-weighting, 400 ms blocks with 75 %
  overlap, absolute gate -70 LKFS, relative gate -10 LU), in LUFS, or plain RMS in dBFS.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

__all__ = [
    "LOUDNESS_METHODS",
    "fade",
    "k_weighting",
    "loudness",
    "loudness_bs1770",
    "lowpass",
    "noise_anchor",
    "rms_db",
]

#: Ripple (dB) and attenuation (dB) of one pass of the anchor low-pass, and where its stop band starts.
LOWPASS_RIPPLE_DB = 0.05
LOWPASS_STOP_DB = 90.0
LOWPASS_STOP_RATIO = 1.05

LOUDNESS_METHODS = ("bs1770", "rms")


def lowpass(x: np.ndarray, sr: int, cutoff: float) -> np.ndarray:
    """Zero-phase steep low-pass of a mono signal (see the module docstring); float64 out.

    Raises ``ValueError`` when the stop band would not fit below the Nyquist frequency.
    """
    nyquist = sr / 2.0
    stop = cutoff * LOWPASS_STOP_RATIO
    if stop >= nyquist:
        raise ValueError(
            f"a {cutoff / 1000:g} kHz low-pass anchor needs a sample rate above {2 * stop / 1000:g} kHz "
            f"(stimuli are at {sr} Hz)"
        )
    order, wn = signal.ellipord(cutoff, stop, LOWPASS_RIPPLE_DB, LOWPASS_STOP_DB, fs=sr)
    sos = signal.ellip(order, LOWPASS_RIPPLE_DB, LOWPASS_STOP_DB, wn, btype="lowpass", output="sos", fs=sr)
    x = np.asarray(x, dtype=np.float64)
    padlen = min(x.size - 1, 3 * (2 * sos.shape[0] + 1) * 50)
    return signal.sosfiltfilt(sos, x, padlen=max(padlen, 0))


def noise_anchor(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus white Gaussian noise whose mean square is ``snr_db`` below that of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    power = float(np.mean(x * x))
    noise = rng.standard_normal(x.size)
    noise *= math.sqrt(power / float(np.mean(noise * noise)) * 10.0 ** (-snr_db / 10.0))
    return x + noise


def fade(x: np.ndarray, sr: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Raised-cosine fade-in and fade-out (each at most half the signal); float64 out."""
    y = np.array(x, dtype=np.float64)
    for seconds, at_start in ((fade_in_s, True), (fade_out_s, False)):
        n = min(int(round(seconds * sr)), y.size // 2)
        if n <= 0:
            continue
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
        if at_start:
            y[:n] *= ramp
        else:
            y[-n:] *= ramp[::-1]
    return y


def k_weighting(sr: int) -> np.ndarray:
    """BS.1770 K-weighting (pre-filter shelf, then the RLB high-pass) as second-order sections at ``sr``.

    The two biquads come from their analog prototypes (shelf: 1681.97 Hz, +4.0 dB, Q 0.7072; high-pass:
    38.14 Hz, Q 0.5003) by the bilinear transform, which reproduces the coefficients BS.1770 tabulates
    for 48 kHz and gives the same response at any other rate.
    """
    # stage 1: high shelf
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sr)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / q + k * k) / a0,
    ]
    # stage 2: high-pass
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sr)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass])


def loudness_bs1770(x: np.ndarray, sr: int) -> float:
    """Integrated loudness (LUFS) of a mono signal per BS.1770-4; ``-inf`` for silence.

    A signal shorter than one 400 ms block is measured as a single block.
    """
    y = signal.sosfilt(k_weighting(sr), np.asarray(x, dtype=np.float64))
    block, step = int(round(0.4 * sr)), int(round(0.1 * sr))
    if y.size <= block:
        z = np.array([np.mean(y * y)])
    else:
        sq = np.concatenate([[0.0], np.cumsum(y * y)])
        starts = np.arange(0, y.size - block + 1, step)
        z = (sq[starts + block] - sq[starts]) / block
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10.0 * np.log10(z)
    z = z[lk > -70.0]
    if z.size == 0:
        return -math.inf
    relative = -0.691 + 10.0 * math.log10(float(np.mean(z))) - 10.0
    z = z[-0.691 + 10.0 * np.log10(z) > relative]
    return -0.691 + 10.0 * math.log10(float(np.mean(z)))


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (a full-scale sine is -3.01 dBFS); ``-inf`` for silence."""
    ms = float(np.mean(np.square(np.asarray(x, dtype=np.float64))))
    return 10.0 * math.log10(ms) if ms > 0 else -math.inf


def loudness(x: np.ndarray, sr: int, method: str) -> float:
    """Loudness of ``x`` by ``method`` ("bs1770": LUFS, "rms": dBFS)."""
    if method == "bs1770":
        return loudness_bs1770(x, sr)
    if method == "rms":
        return rms_db(x)
    raise ValueError(f"unknown loudness method {method!r} (known: {', '.join(LOUDNESS_METHODS)})")
