"""HQ-VAE image networks (HQ-VAE App. F, Fig. 1 and 7): the bottom-up path and the decoder.

Blocks follow Child (2021, VDVAE) as HQ-VAE App. F says, with ``c_mid = 0.5`` of the width:
``Convblock(c_in, c_mid, c_out) = GELU -> Conv1x1 -> GELU -> Conv3x3 -> GELU -> Conv3x3 -> GELU ->
Conv1x1`` and ``Resblock = x + Convblock(x)``. (Fig. 7 is a picture; its exact layer order is not in
the text, so this is VDVAE's order; reference notes §4.3.)

Bottom-up path (:class:`BottomUpEncoder`): a pre-processing ``Conv(4x4)`` stride 2, then ``n_pool``
times "two Resblocks, keep the feature, 2x2 average pooling", then two Resblocks at the coarsest
resolution. The ``resolutions`` coarsest kept features ``H_1 (coarsest) .. H_R`` feed the top-down path:

* CIFAR10 32x32, ``n_pool = 1``: 16x16 and 8x8 (SQ-VAE-2 / VQ-VAE-2 with ``R = 2``, App. F.1.1) or
  8x8 alone (RSQ-VAE / RQ-VAE, ``R = 1``, App. F.2.1);
* CelebA-HQ 256x256, ``n_pool = 4``: 8, 16, 32 (``R = 3``).

With ``resolutions = 1`` the encoder returns one tensor projected to ``d_b`` (+ log-variance channels)
by a 1x1 conv, for the flat quantizers (``residual_sq`` / ``residual_vq``); with ``R > 1`` it returns
the list ``[H_1, ..., H_R]`` that ``hierarchical_sq`` / ``hierarchical_vq`` take (their injected
layers map ``H_r`` to ``d_b``). The pre-processing stride is our reading of Fig. 7b.

Decoder (:class:`TopDownDecoder`): ``Conv3x3(d_b -> C)``, then ``upsample - 1`` times "two Resblocks,
2x nearest upsampling", two Resblocks, ``GELU -> ConvT(4x4)`` stride 2 to the image channels, sigmoid.
"""

from __future__ import annotations

from torch import Tensor, nn

from .image import ImageDecoderBase, ImageEncoderBase


class ConvBlock(nn.Module):
    """VDVAE bottleneck ``GELU-Conv1x1-GELU-Conv3x3-GELU-Conv3x3-GELU-Conv1x1``."""

    def __init__(self, c_in: int, c_mid: int, c_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.GELU(),
            nn.Conv2d(c_in, c_mid, 1),
            nn.GELU(),
            nn.Conv2d(c_mid, c_mid, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(c_mid, c_mid, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(c_mid, c_out, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResBlock(nn.Module):
    """``x + ConvBlock(C, C * mid_ratio, C)``."""

    def __init__(self, channels: int, mid_ratio: float = 0.5) -> None:
        super().__init__()
        self.block = ConvBlock(channels, max(int(channels * mid_ratio), 1), channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def _res_stack(channels: int, n: int, mid_ratio: float) -> list[nn.Module]:
    return [ResBlock(channels, mid_ratio) for _ in range(n)]


class BottomUpEncoder(ImageEncoderBase):
    """HQ-VAE bottom-up path; see the module docstring.

    Args:
        d_b, log_var_channels: from the quantizer.
        in_channels: image channels.
        channels: width ``C`` of the bottom-up path.
        n_pool: average-pooling stages.
        resolutions: ``R``, the number of coarsest features handed to the quantizer.
        res_per_stage: Resblocks per stage (2 in the paper).
        mid_ratio: ``c_mid`` (0.5).
    """

    def __init__(
        self,
        d_b: int = 64,
        log_var_channels: int = 0,
        in_channels: int = 3,
        channels: int = 128,
        n_pool: int = 1,
        resolutions: int = 1,
        res_per_stage: int = 2,
        mid_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        if not 1 <= resolutions <= n_pool + 1:
            raise ValueError(f"resolutions must be in 1..n_pool + 1 = {n_pool + 1}, got {resolutions}")
        self.d_b = d_b
        self.log_var_channels = log_var_channels
        self.in_channels = in_channels
        self.resolutions = resolutions
        self.multi_resolution = resolutions > 1
        self.feature_channels = [channels] * resolutions
        self.stride = 2 ** (n_pool + 1)
        self.pre = nn.Conv2d(in_channels, channels, 4, stride=2, padding=1)
        self.stages = nn.ModuleList(
            nn.Sequential(*_res_stack(channels, res_per_stage, mid_ratio)) for _ in range(n_pool + 1)
        )
        self.pool = nn.AvgPool2d(2)
        if self.multi_resolution:
            if log_var_channels:
                raise ValueError("the hierarchical quantizers take no variance head")
            self.out_channels = None
            self.proj = None
        else:
            self.out_channels = d_b + log_var_channels
            self.proj = nn.Conv2d(channels, self.out_channels, 1)

    def features(self, x: Tensor) -> list[Tensor]:
        """All bottom-up features, coarsest first."""
        self.check_input(x, "bottom-up encoder")
        h = self.pre(x)
        kept = []
        for i, stage in enumerate(self.stages):
            if i:
                h = self.pool(h)
            h = stage(h)
            kept.append(h)
        return kept[::-1]

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        feats = self.features(x)[: self.resolutions]
        if self.proj is None:
            return feats
        return self.proj(feats[0])


class TopDownDecoder(ImageDecoderBase):
    """HQ-VAE decoder from the top-down state ``(B, d_b, h, w)`` to ``(B, out, h * 2^upsample, ...)``."""

    def __init__(
        self,
        d_b: int = 64,
        out_channels: int = 3,
        channels: int = 128,
        upsample: int = 1,
        res_per_stage: int = 2,
        mid_ratio: float = 0.5,
        activation: str = "sigmoid",
    ) -> None:
        super().__init__()
        self.check_args(activation, upsample)
        layers: list[nn.Module] = [nn.Conv2d(d_b, channels, 3, padding=1)]
        for _ in range(upsample - 1):
            layers += _res_stack(channels, res_per_stage, mid_ratio)
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += _res_stack(channels, res_per_stage, mid_ratio)
        layers += [nn.GELU(), nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1)]
        if activation == "sigmoid":
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)
