"""SQ-VAE speech networks (ZeroSpeech 2019): conv encoder, time jitter, speaker-conditioned BiGRU decoder.

Layers follow sony/sqvae ``speech/model.py`` (reference notes §5.2). Frame alignment (the reference
crop convention): the first encoder conv has kernel 3 and no padding, so an input of ``T + 2`` frames
yields ``T / 2`` latents, and the decoder returns ``T`` frames aligned with ``x[:, :, 1:-1]``
(:meth:`SpeechEncoder.target`). The training crop is therefore 34 input frames -> 16 latents -> 32
output frames. ``T`` must be even.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import downsample_mask


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(),
    ]


class SpeechEncoder(nn.Module):
    """SQ-VAE speech encoder: ``(B, n_mels, T + 2) -> (B, d_b + log_var_channels, T / 2)``.

    Conv1d(n_mels->C, k3, p0)-BN-ReLU, Conv(C, k3, p1)-BN-ReLU, Conv(C, k4, s2, p1)-BN-ReLU,
    2 x [Conv(C, k3, p1)-BN-ReLU], Conv1x1(C -> d_b + log_var_channels). Convs before a BatchNorm have
    no bias (as in the reference). BatchNorm normalises across time in training, so this encoder is
    not chunk-invariant in training mode (use eval mode for inference).
    """

    #: input frames consumed at each edge: the target is ``x[..., crop[0] : T_in - crop[1]]``
    crop = (1, 1)
    #: latent positions per target frame (temporal stride)
    stride = 2

    def __init__(
        self, d_b: int = 64, log_var_channels: int = 0, n_mels: int = 80, channels: int = 768
    ) -> None:
        super().__init__()
        self.d_b = d_b
        self.log_var_channels = log_var_channels
        self.out_channels = d_b + log_var_channels
        self.net = nn.Sequential(
            *_conv_bn_relu(n_mels, channels, 3, padding=0),
            *_conv_bn_relu(channels, channels, 3, padding=1),
            *_conv_bn_relu(channels, channels, 4, stride=2, padding=1),
            *_conv_bn_relu(channels, channels, 3, padding=1),
            *_conv_bn_relu(channels, channels, 3, padding=1),
            nn.Conv1d(channels, self.out_channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[-1] - 2
        if t <= 0 or t % 2:
            raise ValueError(
                f"speech encoder needs T + 2 input frames with T even and positive, got {x.shape[-1]} frames"
            )
        return self.net(x)

    def target(self, x: Tensor) -> Tensor:
        """The frames the decoder reconstructs: ``x[:, :, 1:-1]``."""
        return x[..., 1:-1]

    def target_mask(self, mask: Tensor, x: Tensor) -> Tensor:
        """Valid-frame mask ``(B, T)`` over the target, from a mask over the input (``T + 2`` frames,
        cropped like the features) or already over the target (``T`` frames)."""
        n = x.shape[-1]
        if mask.shape[-1] == n:
            return mask[..., 1:-1]
        if mask.shape[-1] == n - 2:
            return mask
        raise ValueError(f"mask has {mask.shape[-1]} frames; expected {n} (input) or {n - 2} (target)")

    def latent_mask(self, target_mask: Tensor, latent_shape: tuple[int, ...]) -> Tensor:
        """Target-frame mask ``(B, T)`` -> latent mask ``(B, T/2)`` (latent j covers frames 2j, 2j+1)."""
        return downsample_mask(target_mask, 2, latent_shape[-1])


class TimeJitter(nn.Module):
    """Time jitter (Chorowski et al. 2019), training only.

    Each latent frame is replaced by frame ``t-1`` with probability ``p/2``, by ``t+1`` with probability
    ``p/2``, and kept otherwise. Edge frames only stay or move inward: the sampled offset is clamped to
    the valid range, as in the reference (so the first frame stays with probability ``1 - p/2``).
    ``lengths`` (per-sample valid latent counts) clamp each sample's last valid frame the same way,
    so padding is never pulled into valid frames.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"jitter probability must be in [0, 1], got {p}")
        self.p = p

    def forward(
        self, z: Tensor, lengths: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        if not self.training:
            return z
        return time_jitter(z, self.p, lengths, generator)


def time_jitter(
    z: Tensor, p: float, lengths: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Apply :class:`TimeJitter` to ``z`` ``(B, C, T)`` unconditionally (see there)."""
    if p == 0.0:
        return z
    b, _, t = z.shape
    u = torch.rand(b, t, device=z.device, generator=generator)
    offset = (u > 1 - p / 2).long() - (u < p / 2).long()
    idx = torch.arange(t, device=z.device).expand(b, t) + offset
    if lengths is not None:
        last = (lengths.to(z.device).long() - 1).clamp(0, t - 1).unsqueeze(1)
        idx = torch.minimum(idx, torch.maximum(last, torch.arange(t, device=z.device)))
    idx = idx.clamp(0, t - 1)
    return z.gather(2, idx.unsqueeze(1).expand_as(z))


class SpeechDecoder(nn.Module):
    """SQ-VAE speech decoder: ``(B, d_b, T/2) -> (B, n_mels, T)``.

    Time jitter (training only) -> nearest x2 upsampling -> concat speaker embedding
    ``Embedding(n_speakers, speaker_dim)`` broadcast over time -> 2-layer BiGRU (hidden 128 per
    direction) -> Linear(2*hidden -> n_mels), no output activation. ``n_speakers=0`` disables the
    speaker embedding (speaker-independent decoding).
    """

    def __init__(
        self,
        d_b: int = 64,
        n_mels: int = 80,
        n_speakers: int = 102,
        speaker_dim: int = 64,
        hidden: int = 128,
        num_layers: int = 2,
        jitter: float = 0.5,
    ) -> None:
        super().__init__()
        self.n_speakers = n_speakers
        self.jitter = TimeJitter(jitter)
        self.speaker = nn.Embedding(n_speakers, speaker_dim) if n_speakers > 0 else None
        in_dim = d_b + (speaker_dim if n_speakers > 0 else 0)
        self.rnn = nn.GRU(in_dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, n_mels)

    @property
    def uses_speaker(self) -> bool:
        return self.speaker is not None

    def forward(
        self,
        z: Tensor,
        speaker: Tensor | None = None,
        lengths: Tensor | None = None,
        jitter: bool | None = None,
    ) -> Tensor:
        """``lengths``: optional valid output frames per sample (B,); padded frames are then packed out
        of the BiGRU so they cannot leak into valid frames. ``jitter``: force on/off (default: training).
        """
        if jitter is None:
            jitter = self.training
        if jitter:
            latent_lengths = None if lengths is None else (lengths + 1) // 2
            z = time_jitter(z, self.jitter.p, latent_lengths)
        h = F.interpolate(z, scale_factor=2, mode="nearest").transpose(1, 2)  # (B, T, d_b)
        if self.speaker is not None:
            if speaker is None:
                raise ValueError("this speech decoder has a speaker embedding: pass speaker ids (B,)")
            emb = self.speaker(speaker.to(h.device).long())
            h = torch.cat([h, emb.unsqueeze(1).expand(-1, h.shape[1], -1)], dim=-1)
        if lengths is not None:
            t = h.shape[1]
            packed = nn.utils.rnn.pack_padded_sequence(
                h, lengths.detach().cpu().long().clamp(1, t), batch_first=True, enforce_sorted=False
            )
            out, _ = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
        else:
            out, _ = self.rnn(h)
        return self.proj(out).transpose(1, 2)
