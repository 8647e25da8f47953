"""UrbanSound8K networks (Liu et al. 2021, reused by HQ-VAE §5.2 / App. F.2.3): multi-scale 2-D conv
encoder and transposed-conv decoder on log-mel "images" ``(B, 1, 80, 344)``.

Layers follow ``liuxubo717/sound_generation`` ``vqvae.py`` (reference notes §5.1): no normalisation
layers, linear output, ReLU ResBlocks with the in-place quirk (:class:`~sqcodec.nets.blocks.VQVAEResBlock`).

Branch sizes: each branch is two stride-2 convs with (kernel, padding) in {(4,1), (2,0), (6,2), (8,3)};
every pair satisfies ``2p - k = -2``, so each conv maps ``n -> floor(n/2)`` for all four branches and
their outputs always have equal sizes (80 x 344 -> 20 x 86, no cropping needed). The decoder's two
``ConvT(4, 2, 1)`` layers map ``h x w -> 4h x 4w`` exactly, so inputs must have both spatial sizes
divisible by 4 for the output to match the input.
"""

from __future__ import annotations

from torch import Tensor, nn

from .blocks import VQVAEResBlock, downsample_mask

#: (kernel, padding) of the four encoder branches
BRANCHES = ((4, 1), (2, 0), (6, 2), (8, 3))


class _Branch(nn.Module):
    def __init__(self, kernel: int, padding: int, channels: int, n_res: int, res_channels: int, quirk: bool):
        super().__init__()
        half = channels // 2
        layers: list[nn.Module] = [
            nn.Conv2d(1, half, kernel, stride=2, padding=padding),
            nn.ReLU(),
            nn.Conv2d(half, channels, kernel, stride=2, padding=padding),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        ]
        layers += [VQVAEResBlock(channels, res_channels, quirk) for _ in range(n_res)]
        layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class UrbanSoundEncoder(nn.Module):
    """Multi-scale encoder: ``(B, 1, F, T) -> (B, d_b + log_var_channels, F/4, T/4)``.

    Four parallel branches, each Conv(1->C/2, k, s2, p) -> ReLU -> Conv(C/2->C, k, s2, p) -> ReLU ->
    Conv3x3(C->C) -> n_res x ResBlock(C, res_channels) -> ReLU, are summed; then Conv1x1(C -> d_b +
    log_var_channels) (the reference's pre-quantisation conv). Defaults: C=128, 2 ResBlocks of 32.
    ``inplace_quirk=True`` reproduces the reference ResBlock ``relu(x) + F(relu(x))``.
    """

    crop = (0, 0)
    stride = 4

    def __init__(
        self,
        d_b: int = 64,
        log_var_channels: int = 0,
        channels: int = 128,
        n_res_block: int = 2,
        res_channels: int = 32,
        inplace_quirk: bool = True,
    ) -> None:
        super().__init__()
        self.d_b = d_b
        self.log_var_channels = log_var_channels
        self.out_channels = d_b + log_var_channels
        self.branches = nn.ModuleList(
            _Branch(k, p, channels, n_res_block, res_channels, inplace_quirk) for k, p in BRANCHES
        )
        self.proj = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"urbansound encoder expects (B, 1, F, T), got {tuple(x.shape)}")
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"urbansound encoder needs F and T divisible by 4, got {tuple(x.shape[-2:])}")
        h = self.branches[0](x)
        for branch in self.branches[1:]:
            h = h + branch(x)
        return self.proj(h)

    def target(self, x: Tensor) -> Tensor:
        return x

    def target_mask(self, mask: Tensor, x: Tensor) -> Tensor:
        """``(B, T)`` valid time frames (broadcast over the mel axis by the objective)."""
        if mask.shape[-1] != x.shape[-1]:
            raise ValueError(f"mask has {mask.shape[-1]} frames; expected {x.shape[-1]}")
        return mask

    def latent_mask(self, target_mask: Tensor, latent_shape: tuple[int, ...]) -> Tensor:
        """``(B, T)`` -> ``(B, F/4, T/4)``: time downsampled by 4 (any-valid), broadcast over frequency."""
        h, w = latent_shape[-2:]
        m = downsample_mask(target_mask, 4, w)
        return m.unsqueeze(1).expand(-1, h, -1)


class UrbanSoundDecoder(nn.Module):
    """Decoder: Conv3x3(d_b->C) -> n_res x ResBlock -> ReLU -> ConvT(C->C/2, 4, 2, 1) -> ReLU ->
    ConvT(C/2->1, 4, 2, 1); linear output. ``(B, d_b, h, w) -> (B, 1, 4h, 4w)``."""

    uses_speaker = False

    def __init__(
        self,
        d_b: int = 64,
        channels: int = 128,
        n_res_block: int = 2,
        res_channels: int = 32,
        inplace_quirk: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(d_b, channels, 3, padding=1)]
        layers += [VQVAEResBlock(channels, res_channels, inplace_quirk) for _ in range(n_res_block)]
        layers += [
            nn.ReLU(),
            nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(channels // 2, 1, 4, stride=2, padding=1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, speaker: Tensor | None = None, lengths: Tensor | None = None) -> Tensor:
        """``speaker`` and ``lengths`` are accepted for interface uniformity and ignored."""
        return self.net(z)
