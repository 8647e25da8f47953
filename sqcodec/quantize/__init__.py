"""Quantizers: Gaussian SQ (SQ-VAE types I-IV), vMF SQ, residual SQ (RSQ-VAE), the injected top-down
path (SQ-VAE-2 and hybrid), and the VQ/RQ baselines; all return :class:`QuantizerOutput`.

``base`` holds the contract, ``gumbel`` the shared mechanics, ``temperature`` the Gumbel schedule.
Quantizers are built from config with :func:`build_quantizer`; the hierarchical ones
(``hierarchical_sq`` = SQ-VAE-2 / hybrid, ``hierarchical_vq`` = VQ-VAE-2) take a list of bottom-up
features (:class:`sqcodec.nets.hierarchical.BottomUpEncoder`) instead of one tensor.
"""

from __future__ import annotations

from typing import Any

from .base import Quantizer, QuantizerOutput, from_rows, row_mask, to_rows
from .gaussian import GaussianSQ
from .hierarchical import HierarchicalQuantizerOutput, HierarchicalSQ, HierarchicalVQ, InjectedTopDownLayer
from .residual import ResidualSQ
from .rq import ResidualVQ
from .temperature import TemperatureSchedule
from .vmf import VmfCategoricalLikelihood, VmfSQ, log_bessel_iv, vmf_log_normalizer
from .vq import EMACodebook, VectorQuantizerEMA

QUANTIZERS: dict[str, type[Quantizer]] = {
    "gaussian_sq": GaussianSQ,
    "vmf_sq": VmfSQ,
    "residual_sq": ResidualSQ,
    "vq": VectorQuantizerEMA,
    "residual_vq": ResidualVQ,
    "hierarchical_sq": HierarchicalSQ,
    "hierarchical_vq": HierarchicalVQ,
}


def build_quantizer(cfg: dict[str, Any]) -> Quantizer:
    """Build a quantizer from ``{"type": name, **constructor kwargs}``.

    ``type`` is one of ``gaussian_sq``, ``vmf_sq``, ``residual_sq``, ``vq``, ``residual_vq``,
    ``hierarchical_sq``, ``hierarchical_vq``.
    """
    cfg = dict(cfg)
    try:
        name = cfg.pop("type")
    except KeyError:
        raise ValueError("quantizer config needs a 'type'") from None
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer type {name!r}; choose from {sorted(QUANTIZERS)}")
    try:
        return QUANTIZERS[name](**cfg)
    except TypeError as err:
        raise ValueError(f"bad options for quantizer {name!r}: {err}") from None


__all__ = [
    "QUANTIZERS",
    "EMACodebook",
    "GaussianSQ",
    "HierarchicalQuantizerOutput",
    "HierarchicalSQ",
    "HierarchicalVQ",
    "InjectedTopDownLayer",
    "Quantizer",
    "QuantizerOutput",
    "ResidualSQ",
    "ResidualVQ",
    "TemperatureSchedule",
    "VectorQuantizerEMA",
    "VmfCategoricalLikelihood",
    "VmfSQ",
    "build_quantizer",
    "from_rows",
    "log_bessel_iv",
    "row_mask",
    "to_rows",
    "vmf_log_normalizer",
]
