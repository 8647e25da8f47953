"""Training: configs (:mod:`.config`), data (:mod:`.data`), the loop (:mod:`.trainer`), checkpoints
(:mod:`.checkpoint`), LR schedules (:mod:`.schedules`), torchrun/DDP (:mod:`.distributed`) and telemetry
(:mod:`.telemetry`). Entry points: :func:`train` and ``python -m sqcodec.train --config X.yaml``.
"""

from __future__ import annotations

from .config import ConfigError, load_config
from .trainer import Trainer, train

__all__ = ["ConfigError", "Trainer", "load_config", "train"]
