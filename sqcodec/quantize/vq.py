"""VQ-VAE baseline with an EMA codebook (van den Oord et al. 2017; HQ-VAE eq. 7 with one layer).

Deterministic nearest-codeword quantization, straight-through gradient to the encoder
(``quantized = z + sg[z_q - z]``), and the commitment term ``beta ||z - sg[z_q]||^2`` summed over
positions and code dimensions and averaged over the batch (the latent-term convention of
:mod:`sqcodec.quantize.base`; the rosinality/Liu code takes a mean instead, i.e. a rescaled beta).
The codebook is a buffer (it never receives gradient) updated by EMA in training only, in fp32:

    N_k <- decay N_k + (1 - decay) n_k,   m_k <- decay m_k + (1 - decay) sum_{i: k_i = k} z_i,
    b_k = m_k / N~_k,   N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j    (Laplace smoothing).

``N_k`` starts at 1 and ``m_k`` at the initial codeword (a consistent state: an unused code does not
blow up by ``1/eps`` on the first update, as it does when ``N_k`` starts at 0). Under DDP (when
``torch.distributed`` is initialised) the batch counts and sums are all-reduced before the update and
random resets are broadcast from rank 0, so replicas stay identical.

Optional codebook reset (``reset_dead_codes=True``):

* ``reset_mode="least_used"`` (default): SQ-VAE App. E.1.2 after Williams et al. (2020): every
  ``reset_every`` (20) training batches, find the most and the least used codes over those batches;
  if the least used has fewer than ``reset_ratio`` (3%) of the most used's assignments, move it to
  ``N(b_most, reset_std^2 I)`` with ``reset_std^2 = 0.01``;
* ``reset_mode="batch"``: every training batch, codes whose EMA count ``N_k`` fell below
  ``dead_threshold`` are moved to random encoder outputs of the batch (Dhariwal et al. 2020).

We implement VQ/RQ ourselves rather than wrapping ``vector-quantize-pytorch`` (whose EMA update this
matches, see the tests) because we need HQ-VAE eq. 15 exactly (cumulative-sum commitment per layer
with the per-sample sum reduction), masks, the paper's reset procedure, EMA statistics of all layers
for a shared codebook, and the :class:`~sqcodec.quantize.base.QuantizerOutput` contract.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, from_rows, row_mask, to_rows
from .gumbel import check_single_layer, fp32, per_sample_sum, perplexity, squared_distances, stats_to_floats

RESET_MODES = ("least_used", "batch")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(*tensors: Tensor) -> None:
    """In-place sum over DDP ranks (no-op when torch.distributed is not initialised)."""
    if _distributed():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)


def broadcast_(tensor: Tensor) -> None:
    """In-place broadcast from rank 0 (no-op without torch.distributed)."""
    if _distributed():
        dist.broadcast(tensor, src=0)


class EMACodebook(nn.Module):
    """A codebook updated by EMA with Laplace-smoothed cluster sizes, plus optional code reset."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        decay: float = 0.99,
        eps: float = 1e-5,
        reset_dead_codes: bool = False,
        reset_mode: str = "least_used",
        dead_threshold: float = 1.0,
        reset_every: int = 20,
        reset_ratio: float = 0.03,
        reset_std: float = 0.1,
    ) -> None:
        super().__init__()
        if reset_mode not in RESET_MODES:
            raise ValueError(f"reset_mode must be one of {RESET_MODES}, got {reset_mode!r}")
        self.dim = int(dim)
        self.codebook_size = int(codebook_size)
        self.decay = float(decay)
        self.eps = float(eps)
        self.reset_dead_codes = bool(reset_dead_codes)
        self.reset_mode = reset_mode
        self.dead_threshold = float(dead_threshold)
        self.reset_every = int(reset_every)
        self.reset_ratio = float(reset_ratio)
        self.reset_std = float(reset_std)
        embed = torch.randn(self.codebook_size, self.dim)
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("cluster_size", torch.ones(self.codebook_size))
        self.register_buffer("usage", torch.zeros(self.codebook_size))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, inputs: list[Tensor], codes: list[Tensor], weights: Tensor | None) -> int:
        """One EMA step from (possibly several layers') inputs ``(N, D)`` and their codes ``(N,)``.

        Returns the number of codes that were reset.
        """
        counts = torch.zeros(self.codebook_size, device=self.embed.device)
        sums = torch.zeros_like(self.embed)
        for x, c in zip(inputs, codes, strict=True):
            x = x.detach().float()
            w = torch.ones(x.shape[0], device=x.device) if weights is None else weights.float()
            counts.index_add_(0, c, w)
            sums.index_add_(0, c, x * w[:, None])
        all_reduce_sum_(counts, sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        self.usage.add_(counts)
        self.num_updates.add_(1)
        if not self.reset_dead_codes:
            return 0
        if self.reset_mode == "least_used":
            return self._reset_least_used()
        return self._reset_batch(inputs, weights)

    def _set(self, idx: Tensor, vectors: Tensor, count: float) -> None:
        self.embed[idx] = vectors
        self.cluster_size[idx] = count
        self.embed_avg[idx] = vectors * count

    def _reset_least_used(self) -> int:
        if int(self.num_updates) % self.reset_every != 0:
            return 0
        usage = self.usage.clone()
        self.usage.zero_()
        most = int(usage.argmax())
        least = int(usage.argmin())
        if most == least or usage[least] >= self.reset_ratio * usage[most]:
            return 0
        new = self.embed[most] + self.reset_std * torch.randn_like(self.embed[most])
        broadcast_(new)
        self._set(torch.tensor([least], device=self.embed.device), new[None], 1.0)
        return 1

    def _reset_batch(self, inputs: list[Tensor], weights: Tensor | None) -> int:
        dead = torch.nonzero(self.cluster_size < self.dead_threshold).reshape(-1)
        if dead.numel() == 0:
            return 0
        pool = torch.cat([x.detach().float() for x in inputs])
        if weights is not None:
            pool = pool[weights.repeat(len(inputs)) > 0]
        if pool.shape[0] == 0:
            new = self.embed[dead].clone()
        else:
            pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
            new = pool[pick]
        broadcast_(new)
        self._set(dead, new, max(1.0, self.dead_threshold))
        return int(dead.numel())


class VectorQuantizerEMA(Quantizer):
    """VQ-VAE quantizer with EMA codebook, straight-through estimator and commitment loss.

    Args:
        dim: code dimension.
        codebook_size: ``K``.
        beta: commitment weight (0.25).
        decay: EMA decay (0.99).
        eps: Laplace smoothing constant.
        reset_dead_codes: enable codebook reset (see module docstring).
        dead_threshold: EMA count below which a code is dead (``reset_mode="batch"``).
        reset_mode: ``"least_used"`` (SQ-VAE App. E.1.2) or ``"batch"``.
        reset_every, reset_ratio, reset_std: parameters of the ``least_used`` reset.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        beta: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        reset_dead_codes: bool = False,
        dead_threshold: float = 1.0,
        reset_mode: str = "least_used",
        reset_every: int = 20,
        reset_ratio: float = 0.03,
        reset_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.dim = int(dim)
        self.beta = float(beta)
        self.book = EMACodebook(
            dim, codebook_size, decay, eps, reset_dead_codes, reset_mode, dead_threshold,
            reset_every, reset_ratio, reset_std,
        )  # fmt: skip

    @property
    def codebook(self) -> Tensor:
        return self.book.embed

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.book.codebook_size]

    def forward(
        self,
        z: Tensor,
        log_var: Tensor | None = None,
        mask: Tensor | None = None,
        layers: int | None = None,
    ) -> QuantizerOutput:
        check_single_layer(layers)
        b = z.shape[0]
        with fp32(z.device):
            rows = to_rows(z.float())
            w = row_mask(mask, rows)
            embed = self.book.embed.float()
            codes = squared_distances(rows, embed).argmin(-1)
            q = F.embedding(codes, embed)  # a buffer: no gradient reaches the codebook
            commitment = self.beta * per_sample_sum((rows - q).pow(2).sum(-1), w, b)
            quantized = rows + (q - rows).detach()  # straight-through
            stats = {"perplexity_l1": perplexity(F.one_hot(codes, self.book.codebook_size).float(), w)}
            if self.training:
                n_reset = self.book.update([rows], [codes], w)
                stats["resets_l1"] = torch.tensor(float(n_reset), device=rows.device)
        return QuantizerOutput(
            quantized=from_rows(quantized, z.shape).to(z.dtype),
            codes=codes.reshape(b, 1, *z.shape[2:]),
            loss=commitment,
            terms={"commitment": commitment},
            stats=stats_to_floats(stats),
        )

    @torch.no_grad()
    def encode(
        self, z: Tensor, log_var: Tensor | None = None, layers: int | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """Nearest-codeword indices ``(B, 1, *S)``."""
        check_single_layer(layers)
        with fp32(z.device):
            codes = squared_distances(to_rows(z.float()), self.book.embed.float()).argmin(-1)
        return codes.reshape(z.shape[0], 1, *z.shape[2:])

    def decode(self, codes: Tensor) -> Tensor:
        if codes.shape[1] != 1:
            raise ValueError(f"VectorQuantizerEMA has one code layer, got {tuple(codes.shape)}")
        return self.book.embed[codes[:, 0]].movedim(-1, 1)
