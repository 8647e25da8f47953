"""Train-set feature statistics: streaming per-mel-bin mean/std, saved as JSON or .npz, and standardisation.

:class:`FeatureStats` accumulates in float64 with the parallel (Chan et al.) form of Welford's update, one
batch of frames at a time, so any number of utterances and any order gives the mean and the population
standard deviation (ddof = 0, as sklearn's ``StandardScaler`` in ParallelWaveGAN's ``compute-statistics``)
of the concatenation. Stats from ``--nj`` jobs combine with :meth:`FeatureStats.merge`. Files are JSON
(exact float64 round trip) or ``.npz`` read with ``allow_pickle=False``; nothing is ever unpickled.

Which presets standardise (``MelPreset.normalisation``): ``vctk`` yes (its paper); ``zerospeech`` no (its
dB/80 + 1 is the whole scaling); ``urbansound`` no by default (the reference code does not; HQ-VAE's text
says "normalized", so ``preset.with_normalisation("standardise")`` is the option); ``codec16k`` no.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_write

__all__ = ["FeatureStats", "compute_stats", "destandardise", "load_stats", "standardise"]

STATS_FORMAT = "sqcodec-feature-stats"
STATS_VERSION = 1


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class FeatureStats:
    """Streaming per-bin statistics over frames; features are ``(..., n_bins, frames)``.

    ``std`` is floored: bins whose std is below ``std_floor`` (constant bins, e.g. a mel band that is always
    at the log floor) get std 1, as ``StandardScaler`` does, so standardising never divides by ~0.
    """

    def __init__(self, n_bins: int | None = None, preset: str | None = None, std_floor: float = 1e-8) -> None:
        self.n_bins = n_bins
        self.preset = preset
        self.std_floor = float(std_floor)
        self.count = 0
        self._mean = np.zeros(n_bins or 0, dtype=np.float64)
        self._m2 = np.zeros(n_bins or 0, dtype=np.float64)
        self.num_utterances = 0

    # -- accumulation ------------------------------------------------------------------------------
    def update(self, features: Any, num_frames: int | None = None) -> FeatureStats:
        """Add the frames of one utterance ``(n_bins, frames)`` or a batch ``(..., n_bins, frames)``.

        ``num_frames`` restricts a single utterance to its first frames (to skip padding).
        """
        x = _as_numpy(features).astype(np.float64, copy=False)
        if x.ndim < 2:
            raise ValueError(f"features must be (..., n_bins, frames), got shape {x.shape}")
        if num_frames is not None:
            x = x[..., :num_frames]
        n_bins = x.shape[-2]
        frames = np.moveaxis(x, -2, -1).reshape(-1, n_bins)
        if self.n_bins is None:
            self.n_bins = n_bins
            self._mean = np.zeros(n_bins)
            self._m2 = np.zeros(n_bins)
        elif n_bins != self.n_bins:
            raise ValueError(f"features have {n_bins} bins, stats have {self.n_bins}")
        if not np.isfinite(frames).all():
            raise ValueError("features contain NaN/inf")
        self.num_utterances += int(np.prod(x.shape[:-2], dtype=np.int64)) if x.ndim > 2 else 1
        n_b = frames.shape[0]
        if n_b == 0:
            return self
        mean_b = frames.mean(axis=0)
        m2_b = np.square(frames - mean_b).sum(axis=0)
        self._combine(n_b, mean_b, m2_b)
        return self

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n_a = self.count
        total = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / total)
        self._m2 = self._m2 + m2_b + np.square(delta) * (n_a * n_b / total)
        self.count = total

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold another accumulator (e.g. another job's) into this one."""
        if other.count == 0:
            return self
        if self.n_bins is None:
            self.n_bins = other.n_bins
            self._mean = np.zeros(other.n_bins)
            self._m2 = np.zeros(other.n_bins)
        if other.n_bins != self.n_bins:
            raise ValueError(f"cannot merge stats with {other.n_bins} and {self.n_bins} bins")
        self._combine(other.count, other._mean, other._m2)
        self.num_utterances += other.num_utterances
        return self

    # -- results -----------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.count == 0:
            raise ValueError("no frames accumulated")

    @property
    def mean(self) -> np.ndarray:
        self._check()
        return self._mean.copy()

    @property
    def var(self) -> np.ndarray:
        self._check()
        return self._m2 / self.count

    @property
    def std(self) -> np.ndarray:
        """Population std, bins below ``std_floor`` set to 1."""
        s = np.sqrt(self.var)
        return np.where(s < self.std_floor, 1.0, s)

    # -- files -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check()
        return {
            "format": STATS_FORMAT,
            "version": STATS_VERSION,
            "preset": self.preset,
            "n_bins": self.n_bins,
            "count": self.count,
            "num_utterances": self.num_utterances,
            "std_floor": self.std_floor,
            "mean": self._mean.tolist(),
            "m2": self._m2.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureStats:
        if d.get("format") != STATS_FORMAT:
            raise ValueError(f"not a sqcodec feature-stats file (format={d.get('format')!r})")
        if int(d.get("version", 0)) > STATS_VERSION:
            raise ValueError(f"feature-stats version {d['version']} is newer than this sqcodec reads")
        st = cls(int(d["n_bins"]), d.get("preset"), float(d.get("std_floor", 1e-8)))
        st.count = int(d["count"])
        st.num_utterances = int(d.get("num_utterances", 0))
        st._mean = np.asarray(d["mean"], dtype=np.float64)
        st._m2 = np.asarray(d["m2"], dtype=np.float64)
        if st._mean.shape != (st.n_bins,) or st._m2.shape != (st.n_bins,) or st.count <= 0:
            raise ValueError("corrupt feature-stats file (shape or count)")
        return st

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically as ``.json`` or ``.npz`` (chosen by the suffix)."""
        path = Path(path)
        d = self.to_dict()
        with atomic_write(path) as tmp:
            if path.suffix == ".json":
                tmp.write_text(json.dumps(d, indent=1) + "\n")
            elif path.suffix == ".npz":
                meta = {k: v for k, v in d.items() if k not in ("mean", "m2", "std")}
                with open(tmp, "wb") as f:
                    np.savez(f, meta=np.array(json.dumps(meta)), mean=self._mean, m2=self._m2, std=self.std)
            else:
                raise ValueError(f"{path}: stats files are .json or .npz")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        path = Path(path)
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    d = json.loads(str(z["meta"]))
                    d["mean"], d["m2"] = z["mean"], z["m2"]
            else:
                d = json.loads(path.read_text())
            return cls.from_dict(d)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: cannot read feature stats ({exc})") from None


def load_stats(path: str | os.PathLike) -> FeatureStats:
    return FeatureStats.load(path)


def compute_stats(features: Any, preset: str | None = None) -> FeatureStats:
    """Stats over an iterable of ``(n_bins, frames)`` arrays/tensors."""
    st = FeatureStats(preset=preset)
    for f in features:
        st.update(f)
    return st


def _mean_std_like(features: Any, stats: FeatureStats) -> tuple[Any, Any]:
    mean, std = stats.mean[:, None], stats.std[:, None]
    if hasattr(features, "detach"):  # torch tensor: same device and dtype
        import torch

        dt = features.dtype if features.is_floating_point() else torch.float32
        return (
            torch.as_tensor(mean, dtype=dt, device=features.device),
            torch.as_tensor(std, dtype=dt, device=features.device),
        )
    dt = features.dtype if np.issubdtype(np.asarray(features).dtype, np.floating) else np.float64
    return mean.astype(dt), std.astype(dt)


def standardise(features: Any, stats: FeatureStats) -> Any:
    """``(f - mean) / std`` per bin on ``(..., n_bins, frames)`` numpy or torch (dtype kept)."""
    mean, std = _mean_std_like(features, stats)
    return (features - mean) / std


def destandardise(features: Any, stats: FeatureStats) -> Any:
    """Inverse of :func:`standardise`."""
    mean, std = _mean_std_like(features, stats)
    return features * std + mean
