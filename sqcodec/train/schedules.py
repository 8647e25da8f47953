"""Optimiser and learning-rate schedules of the papers.

* ``multistep``: MultiStepLR(milestones, gamma) stepped once per optimisation step: SQ-VAE speech
  (Adam lr 4e-4, milestones 300k / 400k, gamma 0.5; reference notes §5.2).
* ``plateau``: ReduceLROnPlateau(mode=min, factor 0.5, patience 3, threshold 1e-4 relative) stepped on
  each deterministic validation loss: SQ-VAE vision and HQ-VAE (notes §1.7; HQ-VAE uses Adam betas
  (0.9, 0.9), set ``optim.betas``).
* ``constant``: the optimiser's lr throughout.

:class:`Schedule` hides the difference: the trainer calls ``after_step()`` every iteration and
``after_validation(loss)`` after each validation; ``state_dict`` holds plain types only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import MultiStepLR, ReduceLROnPlateau


def build_optimizer(params, cfg: dict) -> torch.optim.Optimizer:
    """Adam / AdamW from the ``optim`` config section."""
    name = str(cfg["name"]).lower()
    kwargs = dict(
        lr=float(cfg["lr"]),
        betas=(float(cfg["betas"][0]), float(cfg["betas"][1])),
        eps=float(cfg["eps"]),
        weight_decay=float(cfg["weight_decay"]),
    )
    if name == "adam":
        return torch.optim.Adam(params, **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    raise ValueError(f"unknown optimiser '{cfg['name']}'")


class Schedule:
    """A learning-rate schedule driven by iterations (multistep), validation losses (plateau) or nothing."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: dict) -> None:
        self.name = cfg["name"]
        self.optimizer = optimizer
        self.scheduler: Any = None
        if self.name == "multistep":
            self.scheduler = MultiStepLR(
                optimizer, milestones=[int(m) for m in cfg["milestones"]], gamma=float(cfg["gamma"])
            )
        elif self.name == "plateau":
            self.scheduler = ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=float(cfg["factor"]),
                patience=int(cfg["patience"]),
                threshold=float(cfg["threshold"]),
                threshold_mode="rel",
                min_lr=float(cfg["min_lr"]),
            )
        elif self.name != "constant":
            raise ValueError(f"unknown schedule '{self.name}'")

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_step(self) -> None:
        if self.name == "multistep":
            self.scheduler.step()

    def after_validation(self, loss: float) -> None:
        if self.name == "plateau":
            self.scheduler.step(float(loss))

    def state_dict(self) -> dict:
        if self.scheduler is None:
            return {"name": self.name}
        sd = dict(self.scheduler.state_dict())
        # MultiStepLR keeps a collections.Counter; store a plain dict
        if "milestones" in sd:
            sd["milestones"] = {int(k): int(v) for k, v in dict(sd["milestones"]).items()}
        return {"name": self.name, "scheduler": sd}

    def restart_at(self, step: int, lr: float) -> None:
        """Start this schedule afresh after ``step`` completed steps run under another lr or schedule (a
        resume that changes ``optim.lr`` or ``schedule``): the lr is ``lr`` with every milestone ``<= step``
        already applied, later milestones fire as configured, and a plateau schedule has no history."""
        if self.name == "multistep":
            drops = sum(n for m, n in self.scheduler.milestones.items() if m <= step)
            now = lr * float(self.scheduler.gamma) ** drops
            self.scheduler.base_lrs = [lr] * len(self.optimizer.param_groups)
            self.scheduler.last_epoch = int(step)
        else:
            now = lr
        for g in self.optimizer.param_groups:
            g["lr"] = now
            g["initial_lr"] = lr
        if self.scheduler is not None:
            self.scheduler._last_lr = [now] * len(self.optimizer.param_groups)

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"checkpoint schedule is '{state.get('name')}', config says '{self.name}'")
        if self.scheduler is None:
            return
        sd = dict(state["scheduler"])
        if "milestones" in sd:
            from collections import Counter

            # milestones come from the config (it may have been changed on resume), not the checkpoint
            sd["milestones"] = Counter(self.scheduler.milestones)
        self.scheduler.load_state_dict(sd)
