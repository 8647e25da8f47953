"""Shared mechanics of stochastic quantization: Gumbel-softmax sampling, P-hat statistics, masked sums.

Everything here runs in fp32 (callers enter :func:`fp32` and cast with ``.float()``), following the
SQ-VAE reference code: the Gumbel temperature only sharpens the *sample*; entropies and perplexities
use the untempered softmax P-hat (reference_code_notes §1.3, §1.5; SQ-VAE eq. 7; HQ-VAE App. E).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

#: smallest temperature used in a division (tau -> 0 is the argmax limit; avoid 1/0)
MIN_TAU = 1e-8


@contextlib.contextmanager
def fp32(device: torch.device) -> Iterator[None]:
    """Disable autocast locally so that distances, softmax and entropies stay in fp32."""
    if device.type in ("cuda", "cpu", "xpu", "mps", "hpu"):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:  # pragma: no cover - exotic backends without autocast
        yield


def check_single_layer(layers: int | None) -> None:
    if layers not in (None, 1):
        raise ValueError(f"a single-layer quantizer cannot keep {layers} layers")


def gumbel_softmax(logits: Tensor, tau: Tensor | float) -> Tensor:
    """Soft Gumbel-softmax sample ``softmax((logits + g) / tau)``, ``g = -log(-log U)``, no straight-through.

    U is clamped to ``[eps, 1 - eps]`` (eps = fp32 machine epsilon) as in the SQ-VAE speech code.
    """
    eps = torch.finfo(torch.float32).eps
    u = torch.rand_like(logits).clamp_(eps, 1.0 - eps)
    g = -torch.log(-torch.log(u))
    if isinstance(tau, Tensor):
        tau = tau.to(logits.dtype).clamp_min(MIN_TAU)
    else:
        tau = max(float(tau), MIN_TAU)
    return torch.softmax((logits + g) / tau, dim=-1)


def squared_distances(rows: Tensor, codebook: Tensor) -> Tensor:
    """``||z_i - b_k||^2`` for rows ``(N, D)`` and codebook ``(K, D)`` -> ``(N, K)``, expanded form
    ``||z||^2 + ||b||^2 - 2 z.b`` with the product and the sum fused in one ``addmm`` (two fewer ``(N, K)``
    passes forward and backward than writing the three terms out), clamped at 0 against rounding."""
    norms = rows.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(-1).unsqueeze(0)
    return torch.addmm(norms, rows, codebook.t(), alpha=-2.0).clamp_min(0.0)


def gaussian_logits(rows: Tensor, codebook: Tensor, precision: Tensor) -> Tensor:
    """``-precision/2 * ||z_i - b_k||^2`` for rows ``(N, D)``, codebook ``(K, D)`` and a scalar or per-row
    ``(N, 1)`` precision -> ``(N, K)``, as ONE ``addmm``: ``(-p/2)||z||^2 + (-p/2)||b||^2 + (p z).b``.

    Equal to ``-0.5 * precision * squared_distances(rows, codebook)`` up to rounding, without the separate
    scaling and clamping passes over the ``(N, K)`` matrix (forward and backward); a rounding residue of
    the expanded form at most shifts a logit by a few ulps."""
    half = -0.5 * precision
    bias = half * rows.pow(2).sum(-1, keepdim=True) + half * codebook.pow(2).sum(-1).unsqueeze(0)
    return torch.addmm(bias, precision * rows, codebook.t())


def weighted_squared_distances(rows: Tensor, codebook: Tensor, precision: Tensor) -> Tensor:
    """``sum_j w_ij (z_ij - b_kj)^2`` with a diagonal precision ``w`` of shape ``(N, D)`` -> ``(N, K)``."""
    d = (
        (precision * rows.pow(2)).sum(-1, keepdim=True)
        - 2.0 * (precision * rows) @ codebook.t()
        + precision @ codebook.pow(2).t()
    )
    return d.clamp_min(0.0)


def sample_codewords(logits: Tensor, codebook: Tensor, tau: Tensor | float, stochastic: bool) -> Tensor:
    """Training: the soft Gumbel mixture ``enc @ B``; evaluation: the argmax codewords."""
    if stochastic:
        return gumbel_softmax(logits, tau) @ codebook
    return F.embedding(logits.argmax(-1), codebook)


def entropy_rows(logits: Tensor) -> tuple[Tensor, Tensor]:
    """``(P-hat, H(P-hat))`` per row for untempered logits ``(N, K)``; H in nats, shape ``(N,)``."""
    log_p = torch.log_softmax(logits, dim=-1)
    p = log_p.exp()
    return p, -(p * log_p).sum(-1)


def per_sample_sum(values: Tensor, weights: Tensor | None, batch: int) -> Tensor:
    """Sum over (valid) positions divided by the batch size: a per-sample quantity, batch-averaged."""
    if weights is not None:
        values = values * weights
    return values.sum() / batch


def masked_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """Mean over rows (``values`` ``(N,)`` or ``(N, D)``) counting only valid rows; 0 if none is valid."""
    if weights is None:
        return values.mean()
    w = weights.reshape(-1, *([1] * (values.dim() - 1))).expand_as(values)
    return (values * w).sum() / w.sum().clamp_min(1.0)


def perplexity(probs: Tensor, weights: Tensor | None) -> Tensor:
    """``exp(H(p-bar))`` of the (masked) mean code distribution; lies in ``[1, K]``.

    The mean over rows is a matrix-vector product in the input precision (no ``(N, K)`` fp64 copy: this
    runs every training step); the entropy of the ``K``-vector is computed in fp64."""
    p = probs.detach()
    if weights is not None:
        w = weights.detach().to(p.dtype)
        total = w.sum()
        if total <= 0:
            return torch.ones((), dtype=torch.float64, device=p.device)
        p_bar = ((w @ p) / total).double()
    else:
        if p.shape[0] == 0:
            return torch.ones((), dtype=torch.float64, device=p.device)
        p_bar = p.mean(0).double()
    h = -torch.special.xlogy(p_bar, p_bar).sum()
    return h.exp().clamp(1.0, float(p.shape[-1]))


def code_distribution(logits: Tensor, probs: Tensor, stochastic: bool) -> Tensor:
    """Distribution whose batch mean defines perplexity: soft P-hat in training, one-hot in eval."""
    if stochastic:
        return probs
    return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(probs.dtype)


def stats_to_floats(stats: dict[str, Tensor]) -> dict[str, float]:
    """Detach and convert telemetry tensors with a single host transfer."""
    if not stats:
        return {}
    keys = list(stats)
    values = torch.stack([stats[k].detach().double().reshape(()) for k in keys]).tolist()
    return dict(zip(keys, values, strict=True))
