"""HiFi-GAN vocoder (Kong et al. 2020) on a sqcodec mel preset, built from SpeechBrain's
``speechbrain.lobes.models.HifiGAN.HifiganGenerator``.

The generator maps a preset's features ``(B, n_mels, T)`` to ``T * hop`` samples; the product of its
upsampling factors must equal the preset's hop. Sizes are the paper's V1/V2/V3 (Table 1 of the HiFi-GAN
paper), with V3's factors ``8·8·4 = 256`` for hop 256.

A trained vocoder is a folder: ``vocoder.safetensors`` (generator weights, weight-norm form) +
``vocoder.json`` (format, generator config, the preset, the training record). Nothing is unpickled.

Inference runs in chunks of ``chunk_frames`` frames with ``context_frames`` of real context on each
side, cropped (memory stays flat for long files); the generator's receptive field is a few frames, so
the chunk seams are inaudible (tests bound the difference to whole-input inference).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..audio.features import MelPreset, get_preset
from .factors import generator_config_for_hop

__all__ = [
    "GENERATOR_CONFIGS",
    "HifiGanVocoder",
    "VocoderError",
    "load_vocoder",
    "save_vocoder",
    "VOCODER_CONFIG",
    "VOCODER_WEIGHTS",
]

VOCODER_FORMAT = "sqcodec-vocoder"
VOCODER_VERSION = 1
VOCODER_WEIGHTS = "vocoder.safetensors"
VOCODER_CONFIG = "vocoder.json"

#: HiFi-GAN generator sizes (paper Table 1 / jik876 config_v{1,2,3}.json), for hop 256
GENERATOR_CONFIGS: dict[str, dict[str, Any]] = {
    "v1": {
        "resblock_type": "1",
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_kernel_sizes": [16, 16, 4, 4],
        "upsample_initial_channel": 512,
        "upsample_factors": [8, 8, 2, 2],
    },
    "v2": {
        "resblock_type": "1",
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_kernel_sizes": [16, 16, 4, 4],
        "upsample_initial_channel": 128,
        "upsample_factors": [8, 8, 2, 2],
    },
    "v3": {
        "resblock_type": "2",
        "resblock_dilation_sizes": [[1, 2], [2, 6], [3, 12]],
        "resblock_kernel_sizes": [3, 5, 7],
        "upsample_kernel_sizes": [16, 16, 8],
        "upsample_initial_channel": 256,
        "upsample_factors": [8, 8, 4],
    },
}


class VocoderError(ValueError):
    """A vocoder folder that cannot be used (one line naming the file)."""


def generator_config(size: str | dict[str, Any], hop: int | None = None) -> dict[str, Any]:
    """HifiganGenerator keyword arguments: a dict as given, else the named size (upsampling re-factored
    for ``hop`` when its product differs, :func:`~sqcodec.vocoder.factors.generator_config_for_hop`)."""
    if isinstance(size, dict):
        return dict(size)
    if size not in GENERATOR_CONFIGS:
        raise ValueError(f"unknown HiFi-GAN size {size!r} (choose from {sorted(GENERATOR_CONFIGS)})")
    return dict(GENERATOR_CONFIGS[size]) if hop is None else generator_config_for_hop(size, hop)


class HifiGanVocoder(nn.Module):
    """``features (B, n_mels, T) -> wave (B, T * hop)`` at the preset's rate.

    ``generator``: a size name (``v1``/``v2``/``v3``) or the HifiganGenerator keyword arguments.
    Call it on one ``(n_mels, T)`` map (as :class:`sqcodec.codec.Codec` does) to get a 1-D wave.
    """

    def __init__(
        self,
        preset: str | MelPreset | dict = "codec16k",
        generator: str | dict[str, Any] = "v3",
        chunk_frames: int = 512,
        context_frames: int = 32,
    ) -> None:
        super().__init__()
        from speechbrain.lobes.models.HifiGAN import HifiganGenerator

        self.preset = get_preset(preset)
        self.generator_config = generator_config(generator, self.preset.hop_length)
        hop = int(np.prod(self.generator_config["upsample_factors"]))
        if hop != self.preset.hop_length:
            raise ValueError(
                f"generator upsampling product {hop} != hop {self.preset.hop_length} "
                f"of preset {self.preset.name!r}"
            )
        self.hop = hop
        self.generator = HifiganGenerator(
            in_channels=self.preset.n_mels, out_channels=1, inference_padding=0, **self.generator_config
        )
        self.chunk_frames = int(chunk_frames)
        self.context_frames = int(context_frames)
        self.record: dict[str, Any] = {}
        self._inference_ready = False

    @property
    def sample_rate(self) -> int:
        return int(self.preset.sample_rate)

    def forward(self, features: Tensor) -> Tensor:
        """Training path: ``(B, n_mels, T) -> (B, T * hop)`` (weight norm kept)."""
        return self.generator(features).squeeze(1)

    def prepare_inference(self) -> HifiGanVocoder:
        """Fold weight norm into the weights and switch to eval (idempotent)."""
        if not self._inference_ready:
            self.generator.remove_weight_norm()
            self._inference_ready = True
        return self.eval()

    @torch.inference_mode()
    def synthesize(self, features: Tensor) -> Tensor:
        """Chunked inference: ``(B, n_mels, T) -> (B, T * hop)`` with ``context_frames`` of real context
        each side of every chunk of ``chunk_frames``."""
        self.prepare_inference()
        dev = next(self.parameters()).device
        features = features.to(dev, torch.float32)
        total = features.shape[-1]
        if total <= self.chunk_frames + 2 * self.context_frames:
            return self.generator(features).squeeze(1)
        outs = []
        for start in range(0, total, self.chunk_frames):
            stop = min(start + self.chunk_frames, total)
            a, b = max(0, start - self.context_frames), min(total, stop + self.context_frames)
            y = self.generator(features[..., a:b]).squeeze(1)
            outs.append(y[..., (start - a) * self.hop : (stop - a) * self.hop])
        return torch.cat(outs, dim=-1)

    def vocode(self, features: Tensor) -> Tensor:
        """One ``(n_mels, T)`` map -> a 1-D wave of ``T * hop`` samples (chunked inference)."""
        return self.synthesize(features[None])[0]


def save_vocoder(vocoder: HifiGanVocoder, folder: str | os.PathLike, record: dict | None = None) -> Path:
    """Write ``folder/vocoder.safetensors`` + ``folder/vocoder.json`` atomically (weight-norm form for
    a vocoder still in training, folded weights after :meth:`HifiGanVocoder.prepare_inference`)."""
    from safetensors.torch import save

    from ..train.checkpoint import atomic_write, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in vocoder.generator.state_dict().items()}
    atomic_write(
        folder / VOCODER_WEIGHTS, lambda f: f.write(save(state, metadata={"format": VOCODER_FORMAT}))
    )
    cfg = {
        "format": VOCODER_FORMAT,
        "version": VOCODER_VERSION,
        "architecture": "speechbrain.lobes.models.HifiGAN.HifiganGenerator",
        "generator": vocoder.generator_config,
        "preset": vocoder.preset.to_dict(),
        "weight_norm": not vocoder._inference_ready,
        "record": record if record is not None else vocoder.record,
    }
    atomic_write_text(folder / VOCODER_CONFIG, json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    return folder


def load_vocoder(folder: str | os.PathLike, device: str | torch.device = "cpu") -> HifiGanVocoder:
    """Load a vocoder folder (safetensors + JSON), ready for inference. Raises :class:`VocoderError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..train.checkpoint import read_export_config

    folder = Path(folder)
    cfg_path = folder / VOCODER_CONFIG
    try:
        cfg, weights = read_export_config(
            folder, VOCODER_CONFIG, VOCODER_WEIGHTS, VOCODER_FORMAT, VOCODER_VERSION, "vocoder"
        )
    except ValueError as err:
        raise VocoderError(str(err)) from None
    try:
        import speechbrain.lobes.models.HifiGAN  # noqa: F401
    except ImportError as err:
        raise VocoderError(
            f"{folder}: the HiFi-GAN vocoder needs speechbrain and torchaudio "
            f"(pip install 'sqcodec[vocoder]'; {type(err).__name__}: {err})"
        ) from None
    try:
        vocoder = HifiGanVocoder(cfg.get("preset") or "codec16k", cfg.get("generator") or "v3")
    except (KeyError, TypeError, ValueError) as err:
        raise VocoderError(f"{cfg_path}: cannot build the generator ({err})") from None
    if not cfg.get("weight_norm", True):
        vocoder.prepare_inference()  # the file holds the folded weights
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise VocoderError(f"{weights}: cannot read the weights ({err})") from None
    try:
        vocoder.generator.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise VocoderError(f"{weights}: weights do not fit the generator config ({first})") from None
    vocoder.record = dict(cfg.get("record") or {})
    return vocoder.to(device).prepare_inference()
