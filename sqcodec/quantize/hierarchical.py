"""Injected top-down path: SQ-VAE-2 (HQ-VAE §4.2, eq. 6) and the SQ-VAE-2/RSQ hybrid (App. D, eq. 21-26).

The bottom-up network produces features ``H_r`` at resolutions ``r = 1..R`` (coarsest first). The
top-down path visits them in that order. Resolution group ``r`` (:class:`InjectedTopDownLayer`):

1. upsample the top-down state to the resolution of ``H_r`` (nearest neighbour);
2. encode ``concat(state, H_r)`` with a small conv block, ``Conv3x3 -> GELU -> Conv1x1`` (our choice:
   HQ-VAE Fig. 7 gives VDVAE-style blocks whose exact layout is not recoverable from the text; a
   derivative of the official code uses ``Conv3x3 -> ReLU -> Conv1x1``), giving ``G^_r`` (eq. 21-22).
   The first group (``r = 1``, HQ-VAE §4.1) has no state: its block sees ``H_1`` alone;
3. quantize ``G^_r`` with ``n_r`` residual SQ layers (a :class:`~sqcodec.quantize.ResidualSQ`, own
   codebooks and own ``s_l^2`` per layer; ``n_r = 1`` is the plain injected layer of SQ-VAE-2);
4. add ``sum_{l in group r} Z_l`` to the upsampled state.

Objective (latent part, per sample, batch-averaged)::

    loss = sum_r ||G^_r - sum_{l in l_r} Z_l||^2 / (2 sum_{l in l_r} s_l^2)  -  sum_l H(P-hat_l)
           terms["continuous_r{r}"] (one per resolution group)                terms["entropy_l{l}"]

which is eq. 26 (hybrid) and, with one layer per resolution, exactly eq. 6 (SQ-VAE-2: one
``||Z^_l - Z_l||^2 / (2 s_l^2)`` per layer). Layers are numbered globally ``l = 1..L`` from the coarsest.

:class:`HierarchicalVQ` is the VQ-VAE-2 baseline in the same harness (HQ-VAE §4.2.1, eq. 7): the same
bottom-up/top-down wiring, but each group quantizes ``G^_r`` with deterministic nearest-codeword EMA
codebooks (a :class:`~sqcodec.quantize.ResidualVQ`; one layer per group is VQ-VAE-2), the state gets the
straight-through codewords, and the latent loss is the commitment ``beta ||G^_r - sg[Z_r]||^2`` per layer
(``terms["commitment_l{l}"]``); pair it with the fixed-variance (MSE) reconstruction term.

Output layout (:class:`HierarchicalQuantizerOutput`): ``quantized`` is the final top-down state at the
finest resolution; ``codes`` holds the finest group's codes ``(B, n_R, *S_R)``; ``codes_per_resolution``
holds every group's codes ``(B, n_r, *S_r)`` (coarsest first; this is what :meth:`HierarchicalSQ.encode`
returns and :meth:`HierarchicalSQ.decode` takes); ``layers`` holds every ``Z_l`` at its own resolution;
``encoded`` holds ``G^_r`` per group. Works on 1-D ``(B, C, T)`` and 2-D ``(B, C, H, W)`` maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput, from_rows, row_mask, to_rows
from .gumbel import fp32, stats_to_floats
from .residual import ResidualSQ
from .rq import ResidualVQ


@dataclass
class HierarchicalQuantizerOutput(QuantizerOutput):
    """:class:`QuantizerOutput` plus the per-resolution codes and the encoded ``G^_r``."""

    codes_per_resolution: list[Tensor] = field(default_factory=list)
    encoded: list[Tensor] = field(default_factory=list)


def _conv(spatial_dims: int) -> type[nn.Module]:
    if spatial_dims == 1:
        return nn.Conv1d
    if spatial_dims == 2:
        return nn.Conv2d
    raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims}")


def upsample_to(state: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour upsampling of a ``(B, D, *S)`` state to spatial ``size``."""
    if tuple(state.shape[2:]) == tuple(size):
        return state
    return F.interpolate(state, size=tuple(size), mode="nearest")


class InjectedTopDownLayer(nn.Module):
    """One resolution group of the top-down path (HQ-VAE Fig. 1c; Fig. 6 when ``num_layers > 1``).

    Args:
        feature_channels: channels of the bottom-up feature ``H_r``.
        dim: code dimension ``d_b`` (channels of the top-down state).
        codebook_size: ``K`` of each layer of this group.
        num_layers: ``n_r`` residual SQ layers in this group (1 for SQ-VAE-2).
        has_state: False for the first (coarsest) group, which sees ``H_1`` only.
        spatial_dims: 1 or 2.
        hidden_channels: width of the conv block (default ``max(dim, in_channels // 2)``).
        log_var_init: initial ``log s_l^2``.
        shared_codebook: share one codebook among the residual layers of this group.
        vq: None (stochastic quantization, SQ-VAE-2) or the keyword arguments of a
            :class:`~sqcodec.quantize.ResidualVQ` (``beta``, ``decay``, ``reset_dead_codes``, ...): the
            VQ-VAE-2 baseline layer.
    """

    def __init__(
        self,
        feature_channels: int,
        dim: int,
        codebook_size: int | Sequence[int],
        num_layers: int = 1,
        has_state: bool = True,
        spatial_dims: int = 2,
        hidden_channels: int | None = None,
        log_var_init: float = math.log(10.0),
        shared_codebook: bool = False,
        vq: dict | None = None,
    ) -> None:
        super().__init__()
        conv = _conv(spatial_dims)
        in_ch = int(feature_channels) + (int(dim) if has_state else 0)
        hidden = int(hidden_channels or max(dim, in_ch // 2))
        self.has_state = bool(has_state)
        self.feature_channels = int(feature_channels)
        self.dim = int(dim)
        self.block = nn.Sequential(conv(in_ch, hidden, 3, padding=1), nn.GELU(), conv(hidden, dim, 1))
        self.quantizer: ResidualSQ | ResidualVQ
        if vq is None:
            self.quantizer = ResidualSQ(dim, codebook_size, num_layers, shared_codebook, log_var_init)
        else:
            if not isinstance(codebook_size, int):
                raise ValueError("a VQ top-down group takes one codebook size")
            self.quantizer = ResidualVQ(dim, codebook_size, num_layers, shared_codebook=shared_codebook, **vq)

    @property
    def num_layers(self) -> int:
        return self.quantizer.num_layers

    def encode_block(self, state: Tensor | None, feature: Tensor) -> tuple[Tensor | None, Tensor]:
        """``(upsampled state or None, G^_r)``."""
        if self.has_state:
            if state is None:
                raise ValueError("this top-down layer needs the state of the coarser layers")
            up = upsample_to(state, feature.shape[2:])
            return up, self.block(torch.cat([up.to(feature.dtype), feature], 1))
        if state is not None:
            raise ValueError("the first top-down layer takes no state")
        return None, self.block(feature)

    def forward(
        self,
        state: Tensor | None,
        feature: Tensor,
        mask: Tensor | None = None,
        stochastic: bool = False,
        tau: Tensor | float = 1.0,
        offset: int = 0,
    ) -> dict:
        """Run the group; ``offset`` = number of layers before it (for global layer names)."""
        up, g = self.encode_block(state, feature)
        if isinstance(self.quantizer, ResidualVQ):
            return self._forward_vq(up, g, mask, offset)
        b = g.shape[0]
        with fp32(g.device):
            rows = to_rows(g.float())
            w = row_mask(mask, rows)
            zqs, codes, continuous, entropies, stats = self.quantizer._quantize_rows(
                rows, w, b, stochastic, tau, offset=offset
            )
            zsum = torch.stack(zqs).sum(0)
            z_maps = [from_rows(q, g.shape) for q in zqs]
            new_state = from_rows(zsum, g.shape) + (up.float() if up is not None else 0.0)
        n = self.num_layers
        return {
            "state": new_state,
            "encoded": g,
            "layers": z_maps,
            "codes": torch.stack(codes, 1).reshape(b, *g.shape[2:], n).movedim(-1, 1),
            "continuous": continuous,
            "entropies": entropies,
            "stats": stats,
        }

    def _forward_vq(self, up: Tensor | None, g: Tensor, mask: Tensor | None, offset: int) -> dict:
        """VQ-VAE-2 group: EMA nearest-codeword layers, straight-through state, commitment terms."""
        out = self.quantizer(g, mask=mask)

        def rename(key: str) -> str:  # "commitment_l2" of this group -> global layer number
            name, _, layer = key.rpartition("_l")
            return f"{name}_l{offset + int(layer)}"

        state = out.quantized.float() + (up.float() if up is not None else 0.0)
        commitments = {rename(k): v for k, v in out.terms.items()}
        return {
            "state": state,
            "encoded": g,
            "layers": [z.float() for z in out.layers or []],
            "codes": out.codes,
            "continuous": None,
            "commitments": commitments,
            "entropies": {},
            "stats": {rename(k): torch.tensor(v, device=g.device) for k, v in out.stats.items()},
        }


class HierarchicalSQ(Quantizer):
    """SQ-VAE-2 / hybrid top-down path over bottom-up features ``[H_1 (coarsest), ..., H_R (finest)]``.

    Args:
        dim: code dimension ``d_b`` of every layer.
        feature_channels: channels of each ``H_r``, coarsest first.
        codebook_size: ``K`` for all layers, or one per resolution.
        layers_per_resolution: ``n_r`` per resolution (default all 1 = SQ-VAE-2; ``n_r > 1`` = hybrid).
        spatial_dims: 1 (``(B, C, T)``) or 2 (``(B, C, H, W)``).
        hidden_channels: width of the conv blocks.
        log_var_init: initial ``log s_l^2`` of every layer.
        shared_codebook: share the codebook among the residual layers within a resolution.

    ``forward(features, log_var=None, mask=None)``: ``mask`` is None or a list with one ``(B, *S_r)``
    mask (or None) per resolution. One Gumbel temperature (this module's ``temperature`` buffer) drives
    every layer; :meth:`set_temperature` mirrors it into the groups' buffers.
    """

    def __init__(
        self,
        dim: int,
        feature_channels: Sequence[int],
        codebook_size: int | Sequence[int],
        layers_per_resolution: Sequence[int] | None = None,
        spatial_dims: int = 2,
        hidden_channels: int | None = None,
        log_var_init: float = math.log(10.0),
        shared_codebook: bool = False,
        vq: dict | None = None,
    ) -> None:
        super().__init__()
        n_res = len(feature_channels)
        if n_res < 1:
            raise ValueError("need at least one resolution")
        per_res = list(layers_per_resolution) if layers_per_resolution is not None else [1] * n_res
        sizes = [int(codebook_size)] * n_res if isinstance(codebook_size, int) else list(codebook_size)
        if len(per_res) != n_res or len(sizes) != n_res:
            raise ValueError("layers_per_resolution and codebook_size need one entry per resolution")
        self.dim = int(dim)
        self.layers_per_resolution = [int(n) for n in per_res]
        self.num_layers = sum(self.layers_per_resolution)
        self.groups = nn.ModuleList(
            [
                InjectedTopDownLayer(
                    feature_channels[r],
                    dim,
                    sizes[r],
                    num_layers=per_res[r],
                    has_state=r > 0,
                    spatial_dims=spatial_dims,
                    hidden_channels=hidden_channels,
                    log_var_init=log_var_init,
                    shared_codebook=shared_codebook,
                    vq=vq,
                )
                for r in range(n_res)
            ]
        )

    @property
    def codebook_sizes(self) -> list[int]:
        return [k for g in self.groups for k in g.quantizer.codebook_sizes]

    def set_temperature(self, tau: float) -> None:
        super().set_temperature(tau)
        for g in self.groups:
            g.quantizer.set_temperature(tau)

    def variances(self) -> Tensor:
        """``s_l^2`` of all layers ``(L,)``, coarsest first."""
        return torch.cat([g.quantizer.variances() for g in self.groups])

    def _run(self, features: Sequence[Tensor], mask, stochastic: bool) -> HierarchicalQuantizerOutput:
        if len(features) != len(self.groups):
            raise ValueError(f"expected {len(self.groups)} bottom-up features, got {len(features)}")
        masks = list(mask) if mask is not None else [None] * len(self.groups)
        state = None
        offset = 0
        terms: dict[str, Tensor] = {}
        entropies: dict[str, Tensor] = {}
        stats: dict[str, Tensor] = {}
        z_layers: list[Tensor] = []
        codes: list[Tensor] = []
        encoded: list[Tensor] = []
        for r, (group, feat) in enumerate(zip(self.groups, features, strict=True)):
            out = group(state, feat, masks[r], stochastic, self.temperature, offset)
            state = out["state"]
            if out["continuous"] is not None:
                terms[f"continuous_r{r + 1}"] = out["continuous"]
            terms.update(out.get("commitments", {}))
            entropies.update(out["entropies"])
            stats.update(out["stats"])
            z_layers.extend(out["layers"])
            codes.append(out["codes"])
            encoded.append(out["encoded"])
            offset += group.num_layers
        loss = torch.stack(list(terms.values())).sum()
        if entropies:
            loss = loss - torch.stack(list(entropies.values())).sum()
        dtype = features[-1].dtype
        return HierarchicalQuantizerOutput(
            quantized=state.to(dtype),
            codes=codes[-1],
            loss=loss,
            terms={**terms, **entropies},
            stats=stats_to_floats(stats),
            layers=[z.to(dtype) for z in z_layers],
            codes_per_resolution=codes,
            encoded=encoded,
        )

    def forward(
        self,
        features: Sequence[Tensor],
        log_var: Tensor | None = None,
        mask: Sequence[Tensor | None] | None = None,
    ) -> HierarchicalQuantizerOutput:
        return self._run(features, mask, self.training)

    @torch.no_grad()
    def encode(
        self,
        features: Sequence[Tensor],
        log_var: Tensor | None = None,
        layers: int | None = None,
        mask: Sequence[Tensor | None] | None = None,
    ) -> list[Tensor]:
        """Deterministic codes per resolution, ``[(B, n_r, *S_r)]`` coarsest first."""
        if layers not in (None, self.num_layers):
            raise ValueError("HierarchicalSQ encodes all layers")
        return self._run(features, mask, stochastic=False).codes_per_resolution

    def decode(self, codes: Sequence[Tensor]) -> Tensor:
        """Final top-down state from per-resolution codes (no bottom-up features needed)."""
        if len(codes) != len(self.groups):
            raise ValueError(f"expected codes for {len(self.groups)} resolutions, got {len(codes)}")
        state = None
        for group, c in zip(self.groups, codes, strict=True):
            z = group.quantizer.decode(c)
            state = z if state is None else upsample_to(state, z.shape[2:]) + z
        return state


class HierarchicalVQ(HierarchicalSQ):
    """VQ-VAE-2 baseline on the same top-down path (see the module docstring).

    Args: as :class:`HierarchicalSQ` (without ``log_var_init``), plus ``beta`` (0.25), ``decay`` (0.99)
    and the codebook-reset options of :class:`~sqcodec.quantize.VectorQuantizerEMA`
    (``reset_dead_codes``, ``reset_mode``, ``reset_every``, ``reset_ratio``, ``reset_std``, ...).
    """

    def __init__(
        self,
        dim: int,
        feature_channels: Sequence[int],
        codebook_size: int | Sequence[int],
        layers_per_resolution: Sequence[int] | None = None,
        spatial_dims: int = 2,
        hidden_channels: int | None = None,
        shared_codebook: bool = False,
        **vq_options,
    ) -> None:
        super().__init__(
            dim,
            feature_channels,
            codebook_size,
            layers_per_resolution,
            spatial_dims,
            hidden_channels,
            shared_codebook=shared_codebook,
            vq=dict(vq_options),
        )
