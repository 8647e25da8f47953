"""Residual VQ baseline: RQ-VAE (Lee et al. 2022) trained with HQ-VAE eq. 15.

Layer ``l`` picks the nearest codeword of its EMA codebook to the hard residual
``r_l = H - sum_{l'<l} Z_l'``. The decoder gets ``H + sg[sum_{l<=l'} Z_l - H]`` (straight-through) and
the latent loss is eq. 15's commitment on the *cumulative* sums, per sample and batch-averaged::

    loss = sum_l beta ||H - sg[sum_{l'<=l} Z_l']||^2         terms["commitment_l{l}"]

(over all L layers, also when the decoder input is truncated with ``layers``). Codebooks are buffers
updated by EMA in training only (see :mod:`sqcodec.quantize.vq`); a shared codebook accumulates the
EMA statistics of every layer (counts and sums of all layers' residuals) in one update per step. All
layers are selected with the codebooks of the current step, then the EMA updates are applied.
``layer_dropout=True`` is the non-paper SoundStream quantizer dropout, as in
:class:`~sqcodec.quantize.ResidualSQ`. ``codes``/``layers`` of the output cover the kept layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import QuantizerOutput, ResidualQuantizer, row_mask, to_rows
from .gumbel import fp32, per_sample_sum, perplexity, squared_distances
from .vq import EMACodebook


class ResidualVQ(ResidualQuantizer):
    """RQ-VAE quantizer with EMA codebooks and the eq. 15 cumulative commitment.

    Args:
        dim, codebook_size, num_layers: code dimension, ``K``, ``L``.
        beta: commitment weight (0.25). decay: EMA decay (0.99).
        shared_codebook: one codebook for all layers.
        eps: Laplace smoothing.
        reset_dead_codes, dead_threshold, reset_mode, reset_every, reset_ratio, reset_std: codebook
            reset, see :class:`~sqcodec.quantize.VectorQuantizerEMA`.
        layer_dropout: non-paper random truncation of the decoder input in training.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_layers: int,
        beta: float = 0.25,
        decay: float = 0.99,
        shared_codebook: bool = False,
        reset_dead_codes: bool = False,
        eps: float = 1e-5,
        dead_threshold: float = 1.0,
        reset_mode: str = "least_used",
        reset_every: int = 20,
        reset_ratio: float = 0.03,
        reset_std: float = 0.1,
        layer_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.beta = float(beta)
        self.shared_codebook = bool(shared_codebook)
        self.layer_dropout = bool(layer_dropout)
        n_books = 1 if self.shared_codebook else self.num_layers
        self.books = nn.ModuleList(
            [
                EMACodebook(
                    dim,
                    codebook_size,
                    decay,
                    eps,
                    reset_dead_codes,
                    reset_mode,
                    dead_threshold,
                    reset_every,
                    reset_ratio,
                    reset_std,
                )  # fmt: skip
                for _ in range(n_books)
            ]
        )

    def book(self, layer: int) -> EMACodebook:
        return self.books[0 if self.shared_codebook else layer]

    def codebook(self, layer: int) -> Tensor:
        """Codewords of 0-based layer ``layer``."""
        return self.book(layer).embed

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.book(i).codebook_size for i in range(self.num_layers)]

    def forward(
        self,
        z: Tensor,
        log_var: Tensor | None = None,
        mask: Tensor | None = None,
        layers: int | None = None,
    ) -> QuantizerOutput:
        keep = self._num_kept(layers)
        b = z.shape[0]
        with fp32(z.device):
            rows = to_rows(z.float())
            w = row_mask(mask, rows)
            residual = rows.detach()
            cum = torch.zeros_like(residual)
            inputs, codes, zqs = [], [], []
            terms: dict[str, Tensor] = {}
            stats: dict[str, Tensor] = {}
            kept_sum = None
            for i in range(self.num_layers):
                embed = self.codebook(i).float()
                idx = squared_distances(residual, embed).argmin(-1)
                q = F.embedding(idx, embed)
                inputs.append(residual)
                codes.append(idx)
                zqs.append(q)
                residual = residual - q
                cum = cum + q
                if i + 1 == keep:
                    kept_sum = cum
                # eq. 15: beta ||H - sg[sum_{l'<=l} Z_l']||^2 (cum is built from buffers: no gradient)
                terms[f"commitment_l{i + 1}"] = self.beta * per_sample_sum((rows - cum).pow(2).sum(-1), w, b)
                k = self.book(i).codebook_size
                stats[f"perplexity_l{i + 1}"] = perplexity(F.one_hot(idx, k).float(), w)
            if self.training:
                if self.shared_codebook:
                    n_reset = self.books[0].update(inputs, codes, w)
                    stats["resets_l1"] = torch.tensor(float(n_reset), device=rows.device)
                else:
                    for i in range(self.num_layers):
                        n_reset = self.books[i].update([inputs[i]], [codes[i]], w)
                        stats[f"resets_l{i + 1}"] = torch.tensor(float(n_reset), device=rows.device)
            quantized = rows + (kept_sum - rows).detach()  # straight-through
            loss = torch.stack(list(terms.values())).sum()
        return self._output(z, quantized, codes, zqs, keep, loss, terms, stats)
