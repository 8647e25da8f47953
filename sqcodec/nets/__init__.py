"""Encoders and decoders: ``speech`` (SQ-VAE conv + BiGRU), ``urbansound`` (multi-scale 2-D conv),
``codec`` (the default chunk-local 1-D codec nets), ``image`` (SQ-VAE ConvResNets) and ``hqvae``
(HQ-VAE bottom-up path / decoder, :mod:`.hierarchical`); shared blocks in :mod:`.blocks`.

Encoder interface (used by :class:`sqcodec.model.CodecModel`): ``forward(x) -> (B, d_b +
log_var_channels, *S)``, attributes ``d_b``, ``log_var_channels``, ``out_channels``, ``stride``,
``crop``, and ``target(x)`` (the features the decoder reconstructs), ``target_mask(mask, x)``,
``latent_mask(target_mask, latent_shape)``. Decoder interface: ``forward(z, speaker=None,
lengths=None)`` and ``uses_speaker``.
"""

from __future__ import annotations

from torch import nn

from .codec import CodecDecoder, CodecEncoder, decode_chunked, encode_chunked
from .hierarchical import BottomUpEncoder, TopDownDecoder
from .image import ConvResDecoder, ConvResEncoder
from .speech import SpeechDecoder, SpeechEncoder, TimeJitter, time_jitter
from .urbansound import UrbanSoundDecoder, UrbanSoundEncoder

ENCODERS: dict[str, type[nn.Module]] = {
    "speech": SpeechEncoder,
    "urbansound": UrbanSoundEncoder,
    "codec": CodecEncoder,
    "image": ConvResEncoder,
    "hqvae": BottomUpEncoder,
}
DECODERS: dict[str, type[nn.Module]] = {
    "speech": SpeechDecoder,
    "urbansound": UrbanSoundDecoder,
    "codec": CodecDecoder,
    "image": ConvResDecoder,
    "hqvae": TopDownDecoder,
}


def build_encoder(cfg: dict, d_b: int, log_var_channels: int = 0) -> nn.Module:
    """``cfg = {"type": name, **kwargs}``; ``d_b``/``log_var_channels`` come from the quantizer."""
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind not in ENCODERS:
        raise ValueError(f"unknown encoder type {kind!r}; expected one of {sorted(ENCODERS)}")
    if "d_b" in cfg and cfg.pop("d_b") != d_b:
        raise ValueError(f"encoder d_b differs from the quantizer's code dimension {d_b}")
    return ENCODERS[kind](d_b=d_b, log_var_channels=log_var_channels, **cfg)


def build_decoder(cfg: dict, d_b: int) -> nn.Module:
    """``cfg = {"type": name, **kwargs}``; ``d_b`` comes from the quantizer."""
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder type {kind!r}; expected one of {sorted(DECODERS)}")
    if "d_b" in cfg and cfg.pop("d_b") != d_b:
        raise ValueError(f"decoder d_b differs from the quantizer's code dimension {d_b}")
    return DECODERS[kind](d_b=d_b, **cfg)


__all__ = [
    "BottomUpEncoder",
    "ConvResDecoder",
    "ConvResEncoder",
    "TopDownDecoder",
    "CodecDecoder",
    "CodecEncoder",
    "DECODERS",
    "ENCODERS",
    "SpeechDecoder",
    "SpeechEncoder",
    "TimeJitter",
    "UrbanSoundDecoder",
    "UrbanSoundEncoder",
    "build_decoder",
    "build_encoder",
    "decode_chunked",
    "encode_chunked",
    "time_jitter",
]
