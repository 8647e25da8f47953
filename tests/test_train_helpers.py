"""Shared helpers for the trainer tests (a stand-in model, synthetic feature corpora, tiny configs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from helpers import MICRO_CODEC
from torch import nn

from sqcodec.train.config import resolve_config
from sqcodec.train.telemetry import read_jsonl

#: A small real codec model (RSQ, 3 layers) that trains in a few ms per step on a CPU.
REAL_MODEL = {**MICRO_CODEC, "quantizer": {**MICRO_CODEC["quantizer"], "num_layers": 3}}


@dataclass
class Out:
    loss: torch.Tensor
    terms: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


class StandIn(nn.Module):
    """Plain-MSE autoencoder with the CodecModel interface; ``noise`` > 0 draws from the torch RNG in
    training (like Gumbel sampling), 0 makes it deterministic (for DDP == single-process checks)."""

    def __init__(self, n_mels: int = 80, hidden: int = 6, noise: float = 0.0, **_) -> None:
        super().__init__()
        self.enc = nn.Conv1d(n_mels, hidden, 3, padding=1)
        self.dec = nn.Conv1d(hidden, n_mels, 3, padding=1)
        self.noise = noise
        self.step = 0

    def set_step(self, step: int) -> float:
        self.step = step
        return math.exp(-1e-5 * step)

    def forward(self, batch: dict) -> Out:
        x = batch["x"]
        h = torch.tanh(self.enc(x))
        if self.training and self.noise > 0:
            h = h + self.noise * torch.randn_like(h)
        y = self.dec(h)
        err = (y - x) ** 2
        if "mask" in batch:
            w = batch["mask"].to(err.dtype).unsqueeze(1).expand_as(err)
            mse = (err * w).sum() / w.sum().clamp_min(1)
        else:
            mse = err.mean()
        return Out(
            mse, {"mse": mse}, {"var_l1": float(h.detach().var()), "entropy_l1": 1.0, "perplexity_l1": 2.0}
        )


def build_standin(cfg: dict) -> StandIn:
    return StandIn(**cfg)


def make_npy_corpus(
    root: Path, n: int = 10, n_mels: int = 80, speakers: int = 2, lengths=(40, 130), seed: int = 0
) -> Path:
    """``root/spkK/uttI.npy`` smooth random features (n_mels, T)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        t = int(rng.integers(*lengths))
        base = rng.standard_normal((n_mels, 1)).astype(np.float32)
        walk = np.cumsum(rng.standard_normal((n_mels, t)).astype(np.float32) * 0.3, axis=1)
        d = root / f"spk{i % speakers}"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"utt{i:03d}.npy", (base + walk * 0.2).astype(np.float32))
    return root


def tiny_cfg(data_dir, model: dict | None = None, overrides: list[str] | None = None) -> dict:
    raw = {
        "model": model if model is not None else REAL_MODEL,
        "data": {
            "train": data_dir if isinstance(data_dir, (list, dict)) else str(data_dir),
            "valid_holdout": 2,
            "crop_frames": 16,
            "valid_multiple": 2,
        },
        "optim": {"lr": 3e-3},
        "train": {
            "steps": 12,
            "batch_size": 3,
            "log_every": 1,
            "val_every": 4,
            "ckpt_every": 4,
            "keep_last": 0,
            "device": "cpu",
            "tensorboard": False,
            "plot": False,
        },
    }
    return resolve_config(raw, overrides)


def train_losses(exp: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(exp / "train.jsonl") if r["split"] == "train"]


def valid_losses(exp: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(exp / "train.jsonl") if r["split"] == "valid"]
