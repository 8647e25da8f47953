"""Gaussian stochastic quantization: SQ-VAE eq. 7-8 with the variance types I-IV of Table 1.

Stochastic quantization (eq. 7): ``P-hat(z_q,i = b_k | Z) = softmax_k(logits_ik)`` with
``logits_ik = -(z_i - b_k)^T Sigma^-1 (z_i - b_k) / 2``. Training feeds the decoder the soft
Gumbel-softmax mixture ``softmax((logits + g) / tau) @ B`` (no straight-through, no stop-gradient, no
EMA, no commitment loss); evaluation feeds hard argmax codewords. The latent part of eq. 8 (Table 1,
last column), per sample and averaged over the batch, is::

    loss = sum_i (z_i - z_q,i)^T Sigma^-1 (z_i - z_q,i) / 2   -   sum_i H(P-hat_i)
           terms["continuous"]                                    terms["entropy_l1"]

with the entropy of the *untempered* P-hat. ``Z`` is used for the dequantised variable (no sampling),
as both papers do.

Variance parameterisation (documented choice, speech reference code, reference_code_notes §1.1):

* one trainable scalar ``log_param_q = log s^2`` (init ``log 10``, the speech value; vision uses
  ``log 20`` for D = 64, pass ``log_var_init``);
* type I: ``Sigma = s^2 I``. The vision reference uses ``1 + s^2`` (a quirk that keeps the variance
  above 1; sony/sqvae issue #6); we follow the speech code and the paper, ``s^2`` alone;
* types II-IV: ``Sigma = exp(log_var + log s^2)``, i.e. the encoder head ``log_var`` times ``s^2``
  (multiplicative, speech reference); the vision code adds instead (``exp(head) + s^2``). Shapes of
  ``log_var``: II ``(B, 1, 1, ...)`` one value per instance, or any ``(B, C, *S)`` which is averaged
  (masked) over channels and positions (this replaces the vision code's hard-coded 8x8 tiling);
  III ``(B, 1, *S)`` (a ``(B, D, *S)`` head is averaged over channels, as the vision code does);
  IV ``(B, D, *S)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, from_rows, row_mask, to_rows
from .gumbel import (
    check_single_layer,
    code_distribution,
    entropy_rows,
    fp32,
    gaussian_logits,
    masked_mean,
    per_sample_sum,
    perplexity,
    sample_codewords,
    stats_to_floats,
    weighted_squared_distances,
)

VAR_TYPES = ("I", "II", "III", "IV")


class GaussianSQ(Quantizer):
    """Gaussian SQ-VAE quantizer (SQ-VAE eq. 7-8, Table 1 types I-IV).

    Args:
        dim: code dimension ``d_b``.
        codebook_size: ``K``.
        var_type: ``"I"`` (trainable scalar), ``"II"`` (per instance), ``"III"`` (per position),
            ``"IV"`` (diagonal per position); II-IV need the encoder's ``log_var`` head.
        log_var_init: initial ``log s^2``.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        var_type: str = "I",
        log_var_init: float = math.log(10.0),
    ) -> None:
        super().__init__()
        var_type = str(var_type).upper()
        if var_type not in VAR_TYPES:
            raise ValueError(f"var_type must be one of {VAR_TYPES}, got {var_type!r}")
        self.dim = int(dim)
        self.codebook_size = int(codebook_size)
        self.var_type = var_type
        self.codebook = nn.Parameter(torch.randn(self.codebook_size, self.dim))
        self.log_param_q = nn.Parameter(torch.tensor(float(log_var_init)))

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    @property
    def log_var_channels(self) -> int:
        return {"I": 0, "II": 1, "III": 1, "IV": self.dim}[self.var_type]

    # ------------------------------------------------------------------ variance
    def _log_variance_rows(self, z: Tensor, log_var: Tensor | None, weights: Tensor | None) -> Tensor:
        """Log-variance per row: ``(1, 1)`` (I), ``(N, 1)`` (II, III) or ``(N, D)`` (IV), fp32."""
        theta = self.log_param_q.float()
        if self.var_type == "I":
            if log_var is not None:
                raise ValueError("GaussianSQ type I has no variance head; pass log_var=None")
            return theta.reshape(1, 1)
        if log_var is None:
            raise ValueError(f"GaussianSQ type {self.var_type} needs the encoder's log_var head")
        lv = log_var.float()
        b, _, *s = z.shape
        if lv.dim() == 2:  # (B, C): no positions
            lv = lv.reshape(b, lv.shape[1], *([1] * len(s)))
        if lv.shape[0] != b or lv.dim() != z.dim():
            raise ValueError(f"log_var of shape {tuple(log_var.shape)} does not match z {tuple(z.shape)}")
        n_pos = math.prod(s)
        if self.var_type == "II":
            per_pos = lv.mean(1)  # (B, *S') averaged over channels
            per_pos = per_pos.expand(b, *s).reshape(b, n_pos)
            if weights is None:
                inst = per_pos.mean(1)
            else:
                w = weights.reshape(b, n_pos)
                inst = (per_pos * w).sum(1) / w.sum(1).clamp_min(1.0)
            rows = inst[:, None].expand(b, n_pos).reshape(-1, 1)
        elif self.var_type == "III":
            rows = lv.mean(1, keepdim=True).expand(b, 1, *s).movedim(1, -1).reshape(-1, 1)
        else:  # IV
            if lv.shape[1] != self.dim:
                raise ValueError(f"type IV needs log_var with {self.dim} channels, got {lv.shape[1]}")
            rows = to_rows(lv.expand(b, self.dim, *s))
        return rows + theta

    def _logits_rows(self, rows: Tensor, log_var_rows: Tensor) -> Tensor:
        precision = torch.exp(-log_var_rows)
        cb = self.codebook.float()
        if precision.shape[-1] == 1:
            return gaussian_logits(rows, cb, precision)
        return -0.5 * weighted_squared_distances(rows, cb, precision)

    def logits(self, z: Tensor, log_var: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Untempered logits ``-(z_i - b_k)^T Sigma^-1 (z_i - b_k) / 2``, shape ``(B, *S, K)``, fp32."""
        with fp32(z.device):
            zf = z.float()
            w = row_mask(mask, zf)
            out = self._logits_rows(to_rows(zf), self._log_variance_rows(zf, log_var, w))
        return out.reshape(z.shape[0], *z.shape[2:], self.codebook_size)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        z: Tensor,
        log_var: Tensor | None = None,
        mask: Tensor | None = None,
        layers: int | None = None,
    ) -> QuantizerOutput:
        check_single_layer(layers)
        stochastic = self.training
        b = z.shape[0]
        with fp32(z.device):
            zf = z.float()
            rows = to_rows(zf)
            w = row_mask(mask, zf)
            lv_rows = self._log_variance_rows(zf, log_var, w)
            logits = self._logits_rows(rows, lv_rows)
            codes = logits.argmax(-1)
            zq = sample_codewords(logits, self.codebook.float(), self.temperature, stochastic)
            probs, ent = entropy_rows(logits)
            precision = torch.exp(-lv_rows)
            cont = 0.5 * (precision * (rows - zq).pow(2)).sum(-1)
            continuous = per_sample_sum(cont, w, b)
            entropy = per_sample_sum(ent, w, b)
            loss = continuous - entropy
            var_rows = torch.exp(lv_rows.detach()).expand(rows.shape[0], lv_rows.shape[-1])
            stats = {
                "var_l1": masked_mean(var_rows, w) if self.var_type != "I" else var_rows[0, 0],
                "entropy_l1": masked_mean(ent.detach(), w),
                "perplexity_l1": perplexity(code_distribution(logits, probs, stochastic), w),
            }
        return QuantizerOutput(
            quantized=from_rows(zq, z.shape).to(z.dtype),
            codes=codes.reshape(b, 1, *z.shape[2:]),
            loss=loss,
            terms={"continuous": continuous, "entropy_l1": entropy},
            stats=stats_to_floats(stats),
            layers=None,
        )

    @torch.no_grad()
    def encode(
        self,
        z: Tensor,
        log_var: Tensor | None = None,
        layers: int | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Deterministic codes ``(B, 1, *S)``: argmax of the logits (argmin of the Mahalanobis distance)."""
        check_single_layer(layers)
        return self.logits(z, log_var, mask).argmax(-1).unsqueeze(1)

    def decode(self, codes: Tensor) -> Tensor:
        """Codewords ``(B, D, *S)`` for codes ``(B, 1, *S)``."""
        if codes.shape[1] != 1:
            raise ValueError(f"GaussianSQ has one code layer, got codes of shape {tuple(codes.shape)}")
        return self.codebook[codes[:, 0]].movedim(-1, 1)
