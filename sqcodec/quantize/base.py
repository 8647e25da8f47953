"""The quantizer contract shared by every family (SQ, vMF SQ, RSQ, VQ, RQ) and its result dataclass.

Layout convention: a quantizer takes encoder output ``z`` channel-first, shape ``(B, D, *S)`` where
``S`` is the latent grid (``(T,)`` for 1-D audio features, ``(H, W)`` for 2-D time-frequency maps and
images). Codes always carry a layer axis, ``(B, L, *S)`` (``L = 1`` for single-layer quantizers), so the
bitstream and the CLI treat every quantizer alike.

Loss convention (SQ-VAE reference code, HQ-VAE eq. 6/14): latent terms are *summed* over positions and
code dimensions and *averaged* over the batch, i.e. they are per-sample quantities. An optional
``mask`` of shape ``(B, *S)`` marks valid (unpadded) positions; masked positions contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    """What a quantizer returns from ``forward``.

    quantized: ``(B, D, *S)`` the value fed to the decoder (the soft Gumbel mixture in training, hard
        codewords in evaluation; for residual quantizers the sum over the layers used).
    codes: ``(B, L, *S)`` long, deterministic argmax indices (always computed, also in training).
    loss: scalar, the latent part of the objective (per-sample, batch-averaged).
    terms: named scalar parts of ``loss`` (e.g. ``continuous``, ``entropy_l1``, ``commitment_l2``),
        so tests can check the structure of an objective; ``loss`` equals their signed sum.
    stats: telemetry floats (detached): ``var_l{l}`` (s_l^2), ``entropy_l{l}`` (mean entropy of P-hat
        per position, nats), ``perplexity_l{l}`` (exp of the entropy of the mean code distribution).
    layers: per-layer quantized tensors ``Z_l`` (``(B, D, *S)`` each) where meaningful.
    """

    quantized: Tensor
    codes: Tensor
    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    layers: list[Tensor] | None = None


class Quantizer(nn.Module):
    """Base class. Subclasses implement ``forward``, ``encode`` and ``decode``.

    ``forward(z, log_var=None, mask=None)``: training (stochastic) or evaluation (deterministic)
    quantization, depending on ``self.training``. ``log_var`` is the encoder's variance head for
    Gaussian SQ types II-IV (ignored elsewhere).
    ``encode(z, log_var=None, layers=None)``: deterministic codes ``(B, L', *S)``.
    ``decode(codes)``: codewords (summed over the given layers) ``(B, D, *S)``.
    """

    #: number of code layers L
    num_layers: int = 1
    #: code dimension d_b
    dim: int

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("temperature", torch.tensor(1.0), persistent=True)

    @property
    def codebook_sizes(self) -> list[int]:
        raise NotImplementedError

    @property
    def log_var_channels(self) -> int:
        """Extra encoder channels this quantizer needs for its variance head (0 if none)."""
        return 0

    def set_temperature(self, tau: float) -> None:
        self.temperature.fill_(float(tau))

    def bits_per_position(self, layers: int | None = None) -> float:
        """Bits of one latent position when ``layers`` layers are kept: sum_l log2 K_l."""
        import math

        sizes = self.codebook_sizes[: layers or self.num_layers]
        return float(sum(math.log2(k) for k in sizes))


class ResidualQuantizer(Quantizer):
    """What RSQ-VAE and RQ-VAE share: L layers of codebooks on successive residuals, any first
    ``layers`` of them decodable (HQ-VAE eq. 11 / RQ-VAE eq. 3). Subclasses give ``codebook(layer)``
    and ``forward``; ``layer_dropout`` keeps a random number of layers per training batch."""

    layer_dropout: bool = False

    def codebook(self, layer: int) -> Tensor:
        """Codewords ``(K_l, D)`` of 0-based layer ``layer``."""
        raise NotImplementedError

    def _num_kept(self, layers: int | None) -> int:
        if layers is None:
            if self.training and self.layer_dropout:
                return int(torch.randint(1, self.num_layers + 1, ()).item())
            return self.num_layers
        layers = int(layers)
        if not 1 <= layers <= self.num_layers:
            raise ValueError(f"layers must be in 1..{self.num_layers}, got {layers}")
        return layers

    @torch.no_grad()
    def encode(
        self,
        z: Tensor,
        log_var: Tensor | None = None,
        layers: int | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Deterministic greedy codes ``(B, L', *S)`` (:func:`greedy_residual_codes`)."""
        keep = self.num_layers if layers is None else self._num_kept(layers)
        return greedy_residual_codes(z, [self.codebook(i) for i in range(keep)])

    def decode(self, codes: Tensor) -> Tensor:
        """``sum_{l <= L'} b_{l, codes_l}`` for codes ``(B, L', *S)`` -> ``(B, D, *S)``."""
        n = codes.shape[1]
        if not 1 <= n <= self.num_layers:
            raise ValueError(f"codes carry {n} layers, this quantizer has {self.num_layers}")
        return sum(self.codebook(i)[codes[:, i]] for i in range(n)).movedim(-1, 1)

    def _output(
        self,
        z: Tensor,
        quantized: Tensor,
        codes: list[Tensor],
        zqs: list[Tensor],
        keep: int,
        loss: Tensor,
        terms: dict[str, Tensor],
        stats: dict[str, Tensor],
    ) -> QuantizerOutput:
        """The :class:`QuantizerOutput` of fp32 rows, back in ``z``'s shape and dtype, ``keep`` layers."""
        from .gumbel import stats_to_floats

        return QuantizerOutput(
            quantized=from_rows(quantized, z.shape).to(z.dtype),
            codes=torch.stack(codes[:keep], 1).reshape(z.shape[0], *z.shape[2:], keep).movedim(-1, 1),
            loss=loss,
            terms=terms,
            stats=stats_to_floats(stats),
            layers=[from_rows(q, z.shape).to(z.dtype) for q in zqs[:keep]],
        )


def to_rows(z: Tensor) -> Tensor:
    """``(B, D, *S)`` -> ``(B*prod(S), D)`` in batch-major, position-minor order."""
    d = z.shape[1]
    return z.movedim(1, -1).reshape(-1, d)


def from_rows(rows: Tensor, like_shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Inverse of :func:`to_rows` for a target shape ``(B, D', *S)`` (``D'`` taken from ``rows``)."""
    b, _, *s = like_shape
    return rows.reshape(b, *s, rows.shape[-1]).movedim(-1, 1)


def row_mask(mask: Tensor | None, z: Tensor) -> Tensor | None:
    """``(B, *S)`` bool mask -> ``(B*prod(S),)`` float weights in the order of :func:`to_rows`."""
    if mask is None:
        return None
    return mask.reshape(-1).to(z.dtype)


def greedy_residual_codes(z: Tensor, codebooks: list[Tensor]) -> Tensor:
    """Greedy residual codes ``(B, L', *S)`` of ``z`` ``(B, D, *S)``, one layer per codebook:
    ``k_l = argmin_k ||r_l - b_k||^2``, ``r_{l+1} = r_l - b_{k_l}`` (RQ-VAE's encoder, and RSQ's
    deterministic one: the argmax of ``-||r_l - b_k||^2 / (2 s_l^2)`` for any ``s_l^2 > 0``)."""
    from .gumbel import fp32, squared_distances

    with fp32(z.device):
        residual = to_rows(z.float())
        codes = []
        for cb in codebooks:
            cb = cb.float()
            idx = squared_distances(residual, cb).argmin(-1)
            residual = residual - cb[idx]
            codes.append(idx)
    return torch.stack(codes, 1).reshape(z.shape[0], *z.shape[2:], len(codebooks)).movedim(-1, 1)
