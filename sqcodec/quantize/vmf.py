"""von Mises-Fisher stochastic quantization and the vMF categorical decoder likelihood (SQ-VAE §3.4).

:class:`VmfSQ` (eq. 12-14): unit-normalised encoder output ``z_i`` and codewords ``b_k`` (the
parameter is renormalised at every forward, the stored parameter stays free), logits
``kappa_q <z_i, b_k>`` (eq. 13) with ``kappa_q = 1 + exp(theta)`` (reference code; init
``theta = log 0.05``), the regulariser ``R = sum_i kappa_q (1 - <z_i, z_q,i>)`` (eq. 14, App. B.2) where
``z_q`` is the soft Gumbel mixture of normalised codewords (not renormalised; reference code), and the
entropy of P-hat as in the Gaussian case. ``dim`` is the width the encoder emits; the reference code
widens the code dimension by one (65 for D = 64): do that by passing ``dim = D + 1``.

:class:`VmfCategoricalLikelihood` (eq. 10-14, 18, 24): categorical data ``x_d`` is projected on fixed
class vectors ``w_c`` on ``S^{F-1}``; the decoder output ``f_d`` is normalised onto the sphere and

    NLL = -kappa sum_d w_{x_d}^T f~_d  -  D log C_F(kappa),
    log C_F(kappa) = (F/2 - 1) log kappa - log I_{F/2-1}(kappa)      (eq. 18 without -F/2 log 2 pi)

with a trainable ``kappa = 1 / (exp(theta) + 1e-9)`` (reference; init ``theta = log 0.01``, kappa = 100).
``log I_v`` is evaluated stably with ``scipy.special.ive`` (``log I_v(k) = log ive(v, k) + k``) inside a
custom autograd Function with ``d/dk log I_v(k) = I_{v+1}(k) / I_v(k) + v / k``. Without the
``log C_F`` term the likelihood is linear in kappa and kappa diverges.

Class-vector layouts (``class_vectors``):

* ``"onehot"``: ``w_c = e_c`` in ``R^C`` (``F = C``; the paper's App. E choice for 19 mask classes);
* ``"onehot_paired"``: the reference code's layout, ``e_c`` in ``R^{2 ceil(C/2)}``;
* ``"circle"``: ``F = 2``, ``w_c = (cos a_c, sin a_c)`` with ``a_c = pi (c + 1) / C`` for
  ``c = 0..C-1`` - the paper's grey-level projection (App. E, ``a_l = pi l / L``), a *half* circle, so
  black and white sit at opposite ends and neighbouring levels are neighbours;
* ``"full_circle"``: ``a_c = 2 pi c / C``, evenly spaced over the whole circle (this wraps: the first and
  last classes become neighbours, which is wrong for ordinal grey levels; kept as an option).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, from_rows, row_mask, to_rows
from .gumbel import (
    check_single_layer,
    code_distribution,
    entropy_rows,
    fp32,
    masked_mean,
    per_sample_sum,
    perplexity,
    sample_codewords,
    stats_to_floats,
)


class VmfSQ(Quantizer):
    """vMF SQ-VAE quantizer (SQ-VAE §3.4, eq. 13-14).

    Args:
        dim: code dimension (the reference widens it by one: pass ``D + 1``).
        codebook_size: ``K``.
        log_kappa_init: initial ``theta`` with ``kappa_q = 1 + exp(theta)``.
    """

    def __init__(self, dim: int, codebook_size: int, log_kappa_init: float = math.log(0.05)) -> None:
        super().__init__()
        self.dim = int(dim)
        self.codebook_size = int(codebook_size)
        self.codebook = nn.Parameter(torch.randn(self.codebook_size, self.dim))
        self.log_param_q = nn.Parameter(torch.tensor(float(log_kappa_init)))

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    def kappa(self) -> Tensor:
        """The posterior concentration ``kappa_q = 1 + exp(theta)``."""
        return 1.0 + torch.exp(self.log_param_q.float())

    def normalized_codebook(self) -> Tensor:
        return F.normalize(self.codebook.float(), dim=-1)

    def logits(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        """Untempered logits ``kappa_q <z_i / |z_i|, b_k / |b_k|>``, shape ``(B, *S, K)``, fp32."""
        with fp32(z.device):
            rows = F.normalize(to_rows(z.float()), dim=-1)
            out = self.kappa() * rows @ self.normalized_codebook().t()
        return out.reshape(z.shape[0], *z.shape[2:], self.codebook_size)

    def forward(
        self,
        z: Tensor,
        log_var: Tensor | None = None,
        mask: Tensor | None = None,
        layers: int | None = None,
    ) -> QuantizerOutput:
        """``log_var`` is ignored (kappa_q is one trainable scalar, as in the paper's footnote 4)."""
        check_single_layer(layers)
        stochastic = self.training
        b = z.shape[0]
        with fp32(z.device):
            rows = F.normalize(to_rows(z.float()), dim=-1)
            w = row_mask(mask, rows)
            kappa = self.kappa()
            cb = self.normalized_codebook()
            logits = kappa * rows @ cb.t()
            codes = logits.argmax(-1)
            zq = sample_codewords(logits, cb, self.temperature, stochastic)
            probs, ent = entropy_rows(logits)
            cont = kappa * (1.0 - (rows * zq).sum(-1))
            continuous = per_sample_sum(cont, w, b)
            entropy = per_sample_sum(ent, w, b)
            stats = {
                "kappa_l1": kappa.detach(),
                "var_l1": 1.0 / kappa.detach(),
                "entropy_l1": masked_mean(ent.detach(), w),
                "perplexity_l1": perplexity(code_distribution(logits, probs, stochastic), w),
            }
        return QuantizerOutput(
            quantized=from_rows(zq, z.shape).to(z.dtype),
            codes=codes.reshape(b, 1, *z.shape[2:]),
            loss=continuous - entropy,
            terms={"continuous": continuous, "entropy_l1": entropy},
            stats=stats_to_floats(stats),
        )

    @torch.no_grad()
    def encode(
        self, z: Tensor, log_var: Tensor | None = None, layers: int | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """Deterministic codes ``(B, 1, *S)``: the codeword of largest cosine similarity."""
        check_single_layer(layers)
        return self.logits(z).argmax(-1).unsqueeze(1)

    def decode(self, codes: Tensor) -> Tensor:
        """Normalised codewords ``(B, D, *S)`` for codes ``(B, 1, *S)``."""
        if codes.shape[1] != 1:
            raise ValueError(f"VmfSQ has one code layer, got codes of shape {tuple(codes.shape)}")
        return F.embedding(codes[:, 0], self.normalized_codebook()).movedim(-1, 1)


# ---------------------------------------------------------------------------------------- Bessel


def _log_ive_np(v: float, k: np.ndarray) -> np.ndarray:
    """``log ive(v, k)`` in float64, with the small-argument series where ive underflows."""
    val = special.ive(v, k)
    out = np.empty_like(k)
    ok = val > 0
    out[ok] = np.log(val[ok])
    kk = k[~ok]
    # I_v(k) ~ (k/2)^v / Gamma(v+1) for k -> 0; ive = I_v e^{-k}
    out[~ok] = v * np.log(kk / 2.0) - special.gammaln(v + 1.0) - kk
    return out


def _bessel_ratio_np(v: float, k: np.ndarray) -> np.ndarray:
    """``I_{v+1}(k) / I_v(k)`` in float64 (the same ratio of the scaled functions)."""
    num = special.ive(v + 1.0, k)
    den = special.ive(v, k)
    out = np.empty_like(k)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    out[~ok] = k[~ok] / (2.0 * (v + 1.0))  # small-k limit
    return out


class _LogBesselI(torch.autograd.Function):
    """``log I_v(kappa)`` with its analytic derivative; scipy on the CPU in float64."""

    @staticmethod
    def forward(ctx, kappa: Tensor, v: float) -> Tensor:  # type: ignore[override]
        k_np = kappa.detach().cpu().double().numpy().reshape(-1)
        out = _log_ive_np(v, k_np) + k_np
        ctx.save_for_backward(kappa)
        ctx.v = v
        return torch.from_numpy(out).to(device=kappa.device, dtype=kappa.dtype).reshape(kappa.shape)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (kappa,) = ctx.saved_tensors
        v = ctx.v
        k_np = kappa.detach().cpu().double().numpy().reshape(-1)
        d = _bessel_ratio_np(v, k_np) + v / k_np
        d_t = torch.from_numpy(d).to(device=kappa.device, dtype=kappa.dtype).reshape(kappa.shape)
        return grad_out * d_t, None


def log_bessel_iv(v: float, kappa: Tensor) -> Tensor:
    """``log I_v(kappa)`` (modified Bessel function of the first kind), differentiable in ``kappa``."""
    return _LogBesselI.apply(kappa, float(v))


def vmf_log_normalizer(kappa: Tensor, feature_dim: int) -> Tensor:
    """``log C_F(kappa) = (F/2 - 1) log kappa - log I_{F/2-1}(kappa)`` (eq. 18 without ``-F/2 log 2pi``)."""
    v = feature_dim / 2.0 - 1.0
    return v * torch.log(kappa) - log_bessel_iv(v, kappa)


def mean_resultant_length(kappa: float, feature_dim: int) -> float:
    """``A_F(kappa) = I_{F/2}(kappa) / I_{F/2-1}(kappa) = -d log C_F / d kappa``: expected cosine."""
    v = feature_dim / 2.0 - 1.0
    return float(_bessel_ratio_np(v, np.array([float(kappa)]))[0])


# ---------------------------------------------------------------------------------------- likelihood


def class_vectors_table(num_classes: int, layout: str) -> Tensor:
    """Fixed class vectors ``(C, F)`` on the unit sphere; see the module docstring for layouts."""
    c = int(num_classes)
    if layout == "onehot":
        return torch.eye(c)
    if layout == "onehot_paired":
        f = 2 * math.ceil(c / 2)
        return torch.eye(f)[:c]
    if layout in ("circle", "full_circle"):
        idx = torch.arange(c, dtype=torch.float64)
        angle = math.pi * (idx + 1) / c if layout == "circle" else 2 * math.pi * idx / c
        return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1).float()
    raise ValueError(f"unknown class_vectors layout {layout!r}")


class VmfCategoricalLikelihood(nn.Module):
    """vMF decoder likelihood for categorical data (SQ-VAE eq. 10-14, 24).

    ``forward(f, x, mask=None)``: decoder output ``f`` ``(B, F, *S)`` (normalised here onto the sphere),
    class indices ``x`` ``(B, *S)``; returns the negative log-likelihood per sample averaged over the
    batch (the sum convention of the latent terms), masked positions excluded.

    Args:
        num_classes: ``C``.
        class_vectors: ``"onehot"``, ``"onehot_paired"``, ``"circle"`` or ``"full_circle"``.
        log_kappa_inv_init: initial ``theta`` with ``kappa = 1 / (exp(theta) + 1e-9)``.
    """

    def __init__(
        self,
        num_classes: int,
        class_vectors: str = "onehot",
        log_kappa_inv_init: float = math.log(0.01),
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.layout = class_vectors
        self.register_buffer("class_vectors", class_vectors_table(self.num_classes, class_vectors))
        self.log_kappa_inv = nn.Parameter(torch.tensor(float(log_kappa_inv_init)))

    @property
    def feature_dim(self) -> int:
        """``F``: channels the decoder must output per data position."""
        return int(self.class_vectors.shape[1])

    def kappa(self) -> Tensor:
        return 1.0 / (torch.exp(self.log_kappa_inv.float()) + 1e-9)

    def log_normalizer(self) -> Tensor:
        return vmf_log_normalizer(self.kappa(), self.feature_dim)

    def logits(self, f: Tensor) -> Tensor:
        """Class logits ``kappa w_c^T f~_d`` (eq. 10), shape ``(B, C, *S)``."""
        with fp32(f.device):
            fn = F.normalize(f.float(), dim=1)
            out = torch.einsum("cf,bf...->bc...", self.class_vectors.float(), fn)
            return self.kappa() * out

    def predict(self, f: Tensor) -> Tensor:
        """Most likely class per position, ``(B, *S)``."""
        return self.logits(f).argmax(1)

    def forward(self, f: Tensor, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if f.shape[1] != self.feature_dim:
            raise ValueError(
                f"decoder output has {f.shape[1]} channels, the likelihood needs {self.feature_dim}"
            )
        with fp32(f.device):
            fn = F.normalize(f.float(), dim=1)
            w = self.class_vectors.float()[x].movedim(-1, 1)  # (B, F, *S)
            cos = (w * fn).sum(1)  # (B, *S)
            if mask is not None:
                m = mask.to(cos.dtype)
                cos = cos * m
                count = m.sum()
            else:
                count = torch.tensor(float(cos.numel()), device=cos.device)
            kappa = self.kappa()
            return (-kappa * cos.sum() - count * self.log_normalizer()) / f.shape[0]
