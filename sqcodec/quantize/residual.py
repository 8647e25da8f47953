"""Residual stochastic quantization: RSQ-VAE, HQ-VAE §4.3 eq. 14.

Layer ``l = 1..L`` quantizes the residual ``r_l = H - sum_{l'<l} Z_l'`` with its own codebook ``B_l``
(or one shared codebook) and its own trainable ``s_l^2``: ``logits = -||r_l - b_{l,k}||^2 / (2 s_l^2)``
(eq. 2). Training uses the soft Gumbel mixture for every ``Z_l`` and builds the residuals from those
soft mixtures, with **no detach anywhere**; evaluation uses hard argmax codewords. The latent part of
eq. 14, per sample and batch-averaged, is::

    loss = ||H - sum_{l=1}^{L} Z_l||^2 / (2 sum_l s_l^2)  -  sum_l H(P-hat_{s_l^2}(Z_l | r_l))
           terms["continuous"] (ONE term)                   terms["entropy_l{l}"] (one per layer)

It is *not* the naive eq. 10 (one ``||r_l - Z_l||^2 / (2 s_l^2)`` per layer, reported unstable by the
paper). ``s_l^2 = exp(log_param_q[l])`` (one vector of length L, init ``log 10``) with no "+1".

Truncation. ``forward(..., layers=l')`` feeds the decoder ``sum_{l<=l'} Z_l`` (HQ-VAE §6.2: decoding
with fewer layers needs no retraining). All L layers are still computed and the loss is unchanged: the
continuous term stays the eq. 14 posterior term over all L layers (it is a property of the posterior,
not of the decoder input), so every codebook and every ``s_l^2`` keeps receiving gradient (also no
unused parameters under DDP). ``layer_dropout=True`` is a NON-paper option (SoundStream-style quantizer
dropout): in training, when ``layers`` is None, ``l'`` is drawn uniformly from ``1..L`` per batch.
``codes`` and ``layers`` of the output cover the ``l'`` layers fed to the decoder; ``stats`` cover all L.
In training, ``codes`` are each layer's argmax along the stochastic path (telemetry); in evaluation
they equal :meth:`ResidualSQ.encode` (greedy argmax per layer on hard residuals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import QuantizerOutput, ResidualQuantizer, row_mask, to_rows
from .gumbel import (
    code_distribution,
    entropy_rows,
    fp32,
    gaussian_logits,
    masked_mean,
    per_sample_sum,
    perplexity,
    sample_codewords,
)


def _layer_sizes(codebook_size: int | Sequence[int], num_layers: int) -> list[int]:
    if isinstance(codebook_size, int):
        return [int(codebook_size)] * num_layers
    sizes = [int(k) for k in codebook_size]
    if len(sizes) != num_layers:
        raise ValueError(f"{len(sizes)} codebook sizes given for {num_layers} layers")
    return sizes


class ResidualSQ(ResidualQuantizer):
    """RSQ-VAE quantizer (HQ-VAE eq. 14).

    Args:
        dim: code dimension ``d_b``.
        codebook_size: ``K`` (int, or one per layer when codebooks are not shared).
        num_layers: ``L``.
        shared_codebook: one codebook for all layers (``--share-codebook``).
        log_var_init: initial ``log s_l^2`` of every layer.
        layer_dropout: non-paper random truncation in training (see module docstring).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int | Sequence[int],
        num_layers: int,
        shared_codebook: bool = False,
        log_var_init: float = math.log(10.0),
        layer_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.sizes = _layer_sizes(codebook_size, self.num_layers)
        self.shared_codebook = bool(shared_codebook)
        if self.shared_codebook and len(set(self.sizes)) != 1:
            raise ValueError("a shared codebook needs one codebook size")
        n_books = 1 if self.shared_codebook else self.num_layers
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(self.sizes[i], self.dim)) for i in range(n_books)]
        )
        self.log_param_q = nn.Parameter(torch.full((self.num_layers,), float(log_var_init)))
        self.layer_dropout = bool(layer_dropout)

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.sizes)

    def codebook(self, layer: int) -> Tensor:
        """Codebook of 0-based layer ``layer``."""
        return self.codebooks[0 if self.shared_codebook else layer]

    def variances(self) -> Tensor:
        """``s_l^2`` for every layer, shape ``(L,)``."""
        return torch.exp(self.log_param_q.float())

    def _quantize_rows(
        self,
        rows: Tensor,
        weights: Tensor | None,
        batch: int,
        stochastic: bool,
        tau: Tensor | float,
        offset: int = 0,
    ) -> tuple[list[Tensor], list[Tensor], Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Run all L layers on fp32 rows ``(N, D)``.

        Returns per-layer ``Z_l`` rows, per-layer codes, the ONE continuous term, the entropy terms
        (keys ``entropy_l{offset+l}``) and stats tensors (same numbering).
        """
        var = self.variances()
        residual = rows
        zqs: list[Tensor] = []
        codes: list[Tensor] = []
        entropies: dict[str, Tensor] = {}
        stats: dict[str, Tensor] = {}
        for i in range(self.num_layers):
            name = f"l{offset + i + 1}"
            cb = self.codebook(i).float()
            logits = gaussian_logits(residual, cb, 1.0 / var[i])
            codes.append(logits.argmax(-1))
            zq = sample_codewords(logits, cb, tau, stochastic)
            probs, ent = entropy_rows(logits)
            entropies[f"entropy_{name}"] = per_sample_sum(ent, weights, batch)
            stats[f"var_{name}"] = var[i].detach()
            stats[f"entropy_{name}"] = masked_mean(ent.detach(), weights)
            stats[f"perplexity_{name}"] = perplexity(code_distribution(logits, probs, stochastic), weights)
            residual = residual - zq  # no detach: gradients flow through every layer
            zqs.append(zq)
        err = residual.pow(2).sum(-1)  # ||H - sum_l Z_l||^2 per position
        continuous = per_sample_sum(err, weights, batch) / (2.0 * var.sum())
        return zqs, codes, continuous, entropies, stats

    def forward(
        self,
        z: Tensor,
        log_var: Tensor | None = None,
        mask: Tensor | None = None,
        layers: int | None = None,
    ) -> QuantizerOutput:
        """``log_var`` is ignored (RSQ uses one trainable ``s_l^2`` per layer)."""
        keep = self._num_kept(layers)
        b = z.shape[0]
        with fp32(z.device):
            rows = to_rows(z.float())
            w = row_mask(mask, rows)
            zqs, codes, continuous, entropies, stats = self._quantize_rows(
                rows, w, b, self.training, self.temperature
            )
            quantized = torch.stack(zqs[:keep]).sum(0)
            loss = continuous - torch.stack(list(entropies.values())).sum()
        return self._output(
            z, quantized, codes, zqs, keep, loss, {"continuous": continuous, **entropies}, stats
        )
