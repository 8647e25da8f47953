"""Image ConvResNets of the SQ-VAE image experiments (SQ-VAE App. E.1.2, Table 7, and App. E.3.2).

The paper adopts the DeepMind Sonnet VQ-VAE example networks. Notation (Table 7): ``Conv(4x4)`` stride
2 padding 1, ``Conv(3x3)`` stride 1 padding 1, ``ResBlock_n`` = ``ReLU -> Conv3x3 -> BN -> ReLU ->
Conv1x1 -> BN`` + identity. Every layout of the paper is one instance of a single rule:

* encoder: ``downsample`` stride-2 ``Conv(4x4)`` layers of widths ``[C/2, C, C, ...]``, then an optional
  ``Conv(3x3)_C`` (``conv3x3``), with ``BN -> ReLU`` between consecutive convs (none after the last),
  then ``n_res_block`` x ``ResBlock_C``. ``C`` is the code dimension ``d_b`` (Z-hat is the trunk output);
* decoder: ``n_res_block`` x ``ResBlock_{d_b}``, an optional ``ConvT(3x3)_{d_b}``, then ``downsample``
  stride-2 ``ConvT(4x4)`` layers of widths ``[..., C, C/2, out_channels]``, ``BN -> ReLU`` between them,
  and the output activation (``sigmoid`` for pixel intensities, ``none`` for logits / vMF directions).

=================================  ===========  ========  ==========  ==========================
paper layout                       downsample   conv3x3   res blocks  output
=================================  ===========  ========  ==========  ==========================
E.1 MNIST / Fashion-MNIST 28x28    2 (-> 7x7)   no        2 / 6       1 channel, sigmoid
E.1 CIFAR10 32x32, CelebA 64x64    2 (-> /4)    yes       6           3 channels, sigmoid
E.3 MNIST categorical (256-way)    2 (-> 7x7)   no        2           256 logits / 2 (vMF), none
E.3 CelebAHQ-Mask 64x64 (19)       3 (-> 8x8)   no        2           19 channels, none
=================================  ===========  ========  ==========  ==========================

(E.1's decoder table prints ``ConvT(3x3)_{db/2}`` with output size ``(db, w/4, h/4)``; we keep ``d_b``
channels, which the size column states.) Gaussian SQ types II-IV get a variance head as in the
reference code: one more ``ResBlock`` on the trunk whose output is averaged over channels (II, III: one
channel) or kept (IV: ``d_b`` channels). ``log_var_channels`` other than 1 or ``d_b`` use a 1x1 conv.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ACTIVATIONS = ("sigmoid", "none")


class ImageDecoderBase(nn.Module):
    """Shared decoder interface of the image decoders: ``self.net`` maps codes to the image."""

    uses_speaker = False
    net: nn.Module

    @staticmethod
    def check_args(activation: str, upsample: int) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if upsample < 1:
            raise ValueError(f"upsample must be >= 1, got {upsample}")

    def forward(self, z: Tensor, speaker: Tensor | None = None, lengths: Tensor | None = None) -> Tensor:
        """``speaker`` and ``lengths`` are accepted for interface uniformity and ignored."""
        return self.net(z)


class ImageEncoderBase(nn.Module):
    """The parts of the encoder interface every image encoder shares: input checks, the target (the
    image itself) and no padding masks. Subclasses set ``in_channels`` and ``stride``."""

    crop = (0, 0)
    in_channels: int
    stride: int

    def check_input(self, x: Tensor, what: str) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{what} expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not divisible by {self.stride}")

    def target(self, x: Tensor) -> Tensor:
        return x

    def target_mask(self, mask: Tensor, x: Tensor) -> Tensor:
        return mask

    def latent_mask(self, target_mask: Tensor, latent_shape: tuple[int, ...]) -> Tensor:
        raise ValueError("image batches have no padding mask")


class ImageResBlock(nn.Module):
    """``x + BN(Conv1x1(ReLU(BN(Conv3x3(ReLU(x))))))`` (SQ-VAE Table 7)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def _down_widths(channels: int, downsample: int) -> list[int]:
    return [max(channels // 2, 1)] + [channels] * (downsample - 1)


def _chain(convs: list[nn.Module], widths: list[int]) -> list[nn.Module]:
    """``conv -> BN -> ReLU -> conv -> ... -> conv`` (no norm/activation after the last conv)."""
    layers: list[nn.Module] = []
    for i, (conv, w) in enumerate(zip(convs, widths, strict=True)):
        layers.append(conv)
        if i < len(convs) - 1:
            layers += [nn.BatchNorm2d(w), nn.ReLU()]
    return layers


class ConvResEncoder(ImageEncoderBase):
    """``(B, in_channels, H, W) -> (B, d_b + log_var_channels, H / 2^downsample, W / 2^downsample)``.

    Args:
        d_b, log_var_channels: from the quantizer.
        in_channels: image channels (1 grey, 3 RGB, or the number of classes for one-hot input).
        downsample: number of stride-2 ``Conv(4x4)`` layers.
        conv3x3: append ``Conv(3x3)_{d_b}`` after them (E.1 CIFAR10 / CelebA).
        n_res_block: residual blocks at the latent resolution.
    """

    def __init__(
        self,
        d_b: int = 64,
        log_var_channels: int = 0,
        in_channels: int = 1,
        downsample: int = 2,
        conv3x3: bool = False,
        n_res_block: int = 2,
    ) -> None:
        super().__init__()
        if downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {downsample}")
        self.d_b = d_b
        self.log_var_channels = log_var_channels
        self.out_channels = d_b + log_var_channels
        self.in_channels = in_channels
        self.stride = 2**downsample
        widths = _down_widths(d_b, downsample)
        ins = [in_channels] + widths[:-1]
        convs: list[nn.Module] = [
            nn.Conv2d(i, o, 4, stride=2, padding=1) for i, o in zip(ins, widths, strict=True)
        ]
        if conv3x3:
            convs.append(nn.Conv2d(d_b, d_b, 3, padding=1))
            widths = widths + [d_b]
        self.trunk = nn.Sequential(*_chain(convs, widths), *(ImageResBlock(d_b) for _ in range(n_res_block)))
        self.var_head: nn.Module | None = None
        if log_var_channels:
            head: list[nn.Module] = [ImageResBlock(d_b)]
            if log_var_channels not in (1, d_b):
                head.append(nn.Conv2d(d_b, log_var_channels, 1))
            self.var_head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x, "image encoder")
        h = self.trunk(x)
        if self.var_head is None:
            return h
        v = self.var_head(h)
        if self.log_var_channels == 1:
            v = v.mean(1, keepdim=True)
        return torch.cat([h, v], 1)


class ConvResDecoder(ImageDecoderBase):
    """``(B, d_b, h, w) -> (B, out_channels, h * 2^upsample, w * 2^upsample)`` (mirror of the encoder).

    Args:
        d_b: code dimension (from the quantizer).
        out_channels: 1 / 3 image channels, or the categorical likelihood's channels.
        upsample: number of stride-2 ``ConvT(4x4)`` layers (the encoder's ``downsample``).
        conv3x3: start the up path with ``ConvT(3x3)_{d_b}`` (E.1 CIFAR10 / CelebA).
        n_res_block: residual blocks at the latent resolution.
        activation: ``sigmoid`` (pixel intensities in [0, 1]) or ``none``.
    """

    def __init__(
        self,
        d_b: int = 64,
        out_channels: int = 1,
        upsample: int = 2,
        conv3x3: bool = False,
        n_res_block: int = 2,
        activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.check_args(activation, upsample)
        convs: list[nn.Module] = []
        widths: list[int] = []
        if conv3x3:
            convs.append(nn.ConvTranspose2d(d_b, d_b, 3, padding=1))
            widths.append(d_b)
        up = list(reversed(_down_widths(d_b, upsample)))[1:] + [out_channels]
        ins = [d_b] + up[:-1]
        convs += [nn.ConvTranspose2d(i, o, 4, stride=2, padding=1) for i, o in zip(ins, up, strict=True)]
        widths += up
        layers: list[nn.Module] = [ImageResBlock(d_b) for _ in range(n_res_block)]
        layers += _chain(convs, widths)
        if activation == "sigmoid":
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)
