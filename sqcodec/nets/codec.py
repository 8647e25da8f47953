"""The default codec's fully convolutional 1-D encoder/decoder on log-mel frames (``codec16k``: 80 bins,
hop 256 at 16 kHz = 62.5 frames/s; one stride-2 step -> 31.25 latents/s).

Both networks are chunk-local: no normalisation across time (weight norm only), zero "same" padding,
so a latent depends only on the frames within :attr:`CodecEncoder.receptive_field` of it and chunked
inference with that much overlap reproduces whole-input inference exactly
(:func:`encode_chunked`, :func:`decode_chunked`).

Latent grid: latent ``j`` sits on frames ``(2j, 2j+1)``; ``T`` frames give exactly ``ceil(T/2)``
latents (the encoder pads inside), and the decoder returns ``2 * L`` frames for ``L`` latents (crop
to ``T`` with ``length=``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import DilatedResBlock1d, activation, downsample_mask, maybe_weight_norm


class CodecEncoder(nn.Module):
    """``(B, n_mels, T) -> (B, d_b + log_var_channels, ceil(T/2))``.

    Conv1d(n_mels->C, k=in_kernel) -> ResBlocks(dilations=frame_dilations) at the frame rate ->
    act -> pad (1, 2) + Conv1d(C->C, k4, s2) -> ResBlocks(dilations=latent_dilations) at the latent rate
    -> act -> Conv1x1(C -> d_b + log_var_channels). Weight norm on every conv (optional).
    """

    crop = (0, 0)
    stride = 2

    def __init__(
        self,
        d_b: int = 64,
        log_var_channels: int = 0,
        n_mels: int = 80,
        channels: int = 256,
        in_kernel: int = 7,
        kernel_size: int = 3,
        frame_dilations: Sequence[int] = (1, 3),
        latent_dilations: Sequence[int] = (1, 3, 9),
        act: str = "elu",
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        if in_kernel % 2 != 1:
            raise ValueError(f"in_kernel must be odd, got {in_kernel}")
        self.d_b = d_b
        self.log_var_channels = log_var_channels
        self.out_channels = d_b + log_var_channels
        wn = weight_norm
        self.conv_in = maybe_weight_norm(nn.Conv1d(n_mels, channels, in_kernel, padding=in_kernel // 2), wn)
        self.frame_blocks = nn.Sequential(
            *(DilatedResBlock1d(channels, d, kernel_size, act=act, weight_norm=wn) for d in frame_dilations)
        )
        self.act_down = activation(act)
        self.down = maybe_weight_norm(nn.Conv1d(channels, channels, 4, stride=2), wn)
        self.latent_blocks = nn.Sequential(
            *(DilatedResBlock1d(channels, d, kernel_size, act=act, weight_norm=wn) for d in latent_dilations)
        )
        self.act_out = activation(act)
        self.conv_out = maybe_weight_norm(nn.Conv1d(channels, self.out_channels, 1), wn)
        frame_ctx = in_kernel // 2 + sum(b.receptive_field for b in self.frame_blocks)
        latent_ctx = sum(b.receptive_field for b in self.latent_blocks)
        # latent j reads down-conv inputs 2j-1 .. 2j+2, each of which reads frame_ctx frames each side,
        # and latent_ctx latents (2 frames each) each side: same extent left of 2j and right of 2j+1.
        self._receptive_field = 1 + frame_ctx + 2 * latent_ctx

    @property
    def receptive_field(self) -> int:
        """Frames of context each latent sees on each side of its own two frames ``(2j, 2j+1)``."""
        return self._receptive_field

    def forward(self, x: Tensor) -> Tensor:
        h = self.frame_blocks(self.conv_in(x))
        # pad (1, 2) + k4 s2 -> exactly ceil(T/2) outputs; output j covers frames 2j-1 .. 2j+2
        h = self.down(F.pad(self.act_down(h), (1, 2)))
        return self.conv_out(self.act_out(self.latent_blocks(h)))

    def target(self, x: Tensor) -> Tensor:
        return x

    def target_mask(self, mask: Tensor, x: Tensor) -> Tensor:
        if mask.shape[-1] != x.shape[-1]:
            raise ValueError(f"mask has {mask.shape[-1]} frames; expected {x.shape[-1]}")
        return mask

    def latent_mask(self, target_mask: Tensor, latent_shape: tuple[int, ...]) -> Tensor:
        return downsample_mask(target_mask, 2, latent_shape[-1])


class CodecDecoder(nn.Module):
    """``(B, d_b, L) -> (B, n_mels, 2L)``: the encoder's mirror.

    Conv1d(d_b->C, k3) -> ResBlocks(latent_dilations) -> act -> ConvT(C->C, k4, s2, p1) ->
    ResBlocks(frame_dilations) -> act -> Conv1d(C->n_mels, k=out_kernel). Linear output.
    """

    uses_speaker = False

    def __init__(
        self,
        d_b: int = 64,
        n_mels: int = 80,
        channels: int = 256,
        out_kernel: int = 7,
        kernel_size: int = 3,
        frame_dilations: Sequence[int] = (1, 3),
        latent_dilations: Sequence[int] = (1, 3, 9),
        act: str = "elu",
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        if out_kernel % 2 != 1:
            raise ValueError(f"out_kernel must be odd, got {out_kernel}")
        wn = weight_norm
        self.conv_in = maybe_weight_norm(nn.Conv1d(d_b, channels, 3, padding=1), wn)
        self.latent_blocks = nn.Sequential(
            *(DilatedResBlock1d(channels, d, kernel_size, act=act, weight_norm=wn) for d in latent_dilations)
        )
        self.act_up = activation(act)
        self.up = maybe_weight_norm(nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1), wn)
        self.frame_blocks = nn.Sequential(
            *(DilatedResBlock1d(channels, d, kernel_size, act=act, weight_norm=wn) for d in frame_dilations)
        )
        self.act_out = activation(act)
        self.conv_out = maybe_weight_norm(
            nn.Conv1d(channels, n_mels, out_kernel, padding=out_kernel // 2), wn
        )
        frame_ctx = out_kernel // 2 + sum(b.receptive_field for b in self.frame_blocks)
        latent_ctx = 1 + sum(b.receptive_field for b in self.latent_blocks)
        # output frame f reads upsampled frames f +- frame_ctx; ConvT(4, 2, 1) frame u reads latents
        # floor(u/2) - 1 + (u odd) .. floor(u/2) + (u odd), i.e. within one latent of floor(f/2) plus
        # ceil(frame_ctx/2) more; then latent_ctx more latents.
        self._receptive_field = 1 + math.ceil(frame_ctx / 2) + latent_ctx

    @property
    def receptive_field(self) -> int:
        """Latents of context each output frame ``f`` sees on each side of latent ``f // 2``."""
        return self._receptive_field

    def forward(self, z: Tensor, speaker: Tensor | None = None, lengths: Tensor | None = None) -> Tensor:
        """``speaker`` and ``lengths`` are accepted for interface uniformity and ignored."""
        h = self.latent_blocks(self.conv_in(z))
        h = self.frame_blocks(self.up(self.act_up(h)))
        return self.conv_out(self.act_out(h))


def encode_chunked(encoder: CodecEncoder, x: Tensor, chunk_latents: int) -> Tensor:
    """Encode ``x`` ``(B, n_mels, T)`` in chunks of ``chunk_latents`` latents with receptive-field
    overlap; equals ``encoder(x)`` up to float rounding (the encoder must be in eval mode or free of
    train-only behaviour, which :class:`CodecEncoder` is). Memory is bounded by the chunk size."""
    if chunk_latents <= 0:
        raise ValueError("chunk_latents must be positive")
    t = x.shape[-1]
    n_lat = math.ceil(t / 2)
    ctx = 2 * math.ceil(encoder.receptive_field / 2)  # even, so chunk starts stay on the latent grid
    out = []
    for a in range(0, n_lat, chunk_latents):
        b = min(n_lat, a + chunk_latents)
        s, e = max(0, 2 * a - ctx), min(t, 2 * b + ctx)
        h = encoder(x[..., s:e])
        out.append(h[..., a - s // 2 : b - s // 2])
    return torch.cat(out, dim=-1)


def decode_chunked(decoder: CodecDecoder, z: Tensor, chunk_latents: int) -> Tensor:
    """Decode latents ``z`` ``(B, d_b, L)`` in chunks of ``chunk_latents`` latents with receptive-field
    overlap; equals ``decoder(z)`` (``(B, n_mels, 2L)``) up to float rounding."""
    if chunk_latents <= 0:
        raise ValueError("chunk_latents must be positive")
    n_lat = z.shape[-1]
    ctx = decoder.receptive_field
    out = []
    for a in range(0, n_lat, chunk_latents):
        b = min(n_lat, a + chunk_latents)
        s, e = max(0, a - ctx), min(n_lat, b + ctx)
        y = decoder(z[..., s:e])
        out.append(y[..., 2 * (a - s) : 2 * (b - s)])
    return torch.cat(out, dim=-1)
