"""Gumbel-softmax temperature schedule: tau = max(tau_min, tau0 * exp(-decay * step)).

HQ-VAE App. E (after Jang et al. 2017) with c_tau = tau_min = 0 and r = decay = 1e-5 per optimisation
step. SQ-VAE App. E prints exp(+1e-5 t): a sign typo, the reference code decays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TemperatureSchedule:
    tau0: float = 1.0
    decay: float = 1e-5
    tau_min: float = 0.0

    def __call__(self, step: int) -> float:
        return max(self.tau_min, self.tau0 * math.exp(-self.decay * step))
