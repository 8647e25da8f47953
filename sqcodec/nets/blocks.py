"""Small shared building blocks: residual blocks (VQ-VAE 2-D, dilated 1-D) and mask helpers.

The networks that use them live next door: :mod:`sqcodec.nets.urbansound` (VQ-VAE ResBlock),
:mod:`sqcodec.nets.codec` (dilated 1-D ResBlock), :mod:`sqcodec.nets.speech`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ACTIVATIONS = {
    "elu": lambda: nn.ELU(),
    "gelu": lambda: nn.GELU(),
    "silu": lambda: nn.SiLU(),
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
}


def activation(name: str) -> nn.Module:
    """An activation module by name: ``elu``, ``gelu``, ``silu``, ``relu`` or ``leaky_relu`` (slope 0.2)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


def maybe_weight_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``module`` in weight normalisation (``torch.nn.utils.parametrizations``) if ``enabled``."""
    if not enabled:
        return module
    return nn.utils.parametrizations.weight_norm(module)


class VQVAEResBlock(nn.Module):
    """The residual block of rosinality's VQ-VAE-2, used by Liu et al. (2021) for UrbanSound8K.

    ``F(h) = Conv1x1(r -> C)(ReLU(Conv3x3(C -> r)(h)))``.

    ``inplace_quirk=True`` (default) reproduces the reference numerics: its first ReLU is in-place, so
    the tensor later added as the skip has already been rectified and the block computes
    ``relu(x) + F(relu(x))``. ``inplace_quirk=False`` gives the textbook ``x + F(relu(x))``. Both are
    written here without in-place ops (autograd-safe); only the value of the skip differs.
    """

    def __init__(self, channels: int, res_channels: int, inplace_quirk: bool = True) -> None:
        super().__init__()
        self.inplace_quirk = inplace_quirk
        self.conv1 = nn.Conv2d(channels, res_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(res_channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x)
        out = self.conv2(F.relu(self.conv1(h)))
        return (h if self.inplace_quirk else x) + out


class DilatedResBlock1d(nn.Module):
    """Pre-activation dilated residual unit: ``x + Conv1x1(act(Conv_k,dil(act(x))))``.

    "Same" zero padding (odd ``kernel_size``), no normalisation across time, so the output at
    position t depends only on inputs within ``dilation * (kernel_size - 1) / 2`` positions each side
    (:attr:`receptive_field`): the block is chunk-local.
    """

    def __init__(
        self,
        channels: int,
        dilation: int = 1,
        kernel_size: int = 3,
        hidden: int | None = None,
        act: str = "elu",
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        hidden = hidden or channels
        pad = dilation * (kernel_size - 1) // 2
        self.receptive_field = pad
        self.act1 = activation(act)
        self.conv1 = maybe_weight_norm(
            nn.Conv1d(channels, hidden, kernel_size, dilation=dilation, padding=pad), weight_norm
        )
        self.act2 = activation(act)
        self.conv2 = maybe_weight_norm(nn.Conv1d(hidden, channels, 1), weight_norm)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


def downsample_mask(mask: Tensor, factor: int, out_len: int) -> Tensor:
    """``(B, T)`` valid-frame mask -> ``(B, out_len)`` mask at ``1/factor`` of the rate.

    A coarse position ``j`` covers frames ``[j*factor, (j+1)*factor)`` and is valid if ANY of them is
    (ceil semantics: a trailing partial group still counts, matching ``ceil(T/factor)`` latents).
    The result is cropped or padded with ``False`` to ``out_len``.
    """
    m = mask.to(torch.bool)
    b, t = m.shape
    groups = math.ceil(t / factor)
    m = F.pad(m, (0, groups * factor - t), value=False)
    m = m.reshape(b, groups, factor).any(dim=-1)
    if groups >= out_len:
        return m[:, :out_len]
    return F.pad(m, (0, out_len - groups), value=False)
