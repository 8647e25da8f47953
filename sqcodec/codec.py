"""The codec API: a trained :class:`~sqcodec.model.CodecModel` + its mel preset + a vocoder, with
file-level ``encode_file`` / ``decode_file`` to and from the ``.codes`` container.

::

    from sqcodec.codec import load_codec
    codec = load_codec("exp/tiny/checkpoints/step_00000300.pt")   # or a folder written by save_codec
    codec.encode_file("in.wav", "out.codes", layers=2)
    codec.decode_file("out.codes", "out.wav")

Models load without unpickling anything: a training checkpoint through ``torch.load(weights_only=True)``
(:mod:`sqcodec.train.checkpoint`), or an exported folder ``model.safetensors`` + ``config.json``
(:func:`save_codec`). ``load_codec(None)`` loads the embedded default from ``sqcodec/pretrained/default/``
(an exported folder) and says clearly when it is not shipped.

**Model hash** (``Codec.model_sha256``, stored in every ``.codes`` header and checked on decode): sha256
over a canonical serialisation of the model, independent of the file it came from, so a checkpoint and
its safetensors export have the same hash. Bytes hashed, in order: ``b"sqcodec-model-v1\\0"``, the model
config as JSON (sorted keys, compact separators) + ``\\0``, the preset as JSON (same) + ``\\0``, then for
each state-dict entry in sorted name order: ``name \\0 dtype \\0 shape-as-json \\0`` + the tensor's raw
little-endian bytes (CPU, contiguous).

**Chunking.** Codes never depend on ``chunk_seconds``: for each chunk of latents the front-end runs on the
samples of the frames the encoder's receptive field needs plus ``ceil(n_fft/2/hop) + 1`` frames of margin
(the centred reflect-padded STFT only differs from the whole-file STFT within ``n_fft/2`` samples of a
segment edge that is not a file edge); the margin frames are cropped, the encoder runs on the exact
frames and the latents outside the chunk are cropped. Features are never held for the whole file.
:meth:`Codec.encode_file` streams: it reads the file in blocks of :data:`STREAM_BLOCK` frames, downmixes
and resamples each with soxr's stream (bit-identical to the one-shot resampling here) and keeps only the
samples the next chunk needs, so memory does not grow with the file. Decoding is chunked up to the
features; the Griffin-Lim fallback then runs on the whole file.

**Entropy tables.** A folder may hold ``entropy_tables.json`` (:mod:`sqcodec.entropy_tables`): the
model's fixed per-layer tables. :meth:`Codec.encode_file` offers them to :func:`write_codes` (``auto``
uses them for a layer only where that makes the file smaller) and :meth:`Codec.decode_file` passes them
to :func:`read_codes`; they are loaded and checked with the model and written by :func:`save_codec`.

**What decode restores.** The input is downmixed (mean of the channels) and resampled to the preset
rate before encoding; decode resamples the vocoder output back to the original rate, crops/pads it to the
original length and duplicates the mono signal to the original channel count (the codec stores one
stream). No loudness normalisation is applied: the header's ``gain`` is 1.0 (decode multiplies by it,
so files that store another gain decode correctly).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .audio import AudioError, audio_info, get_preset, resample, write_audio
from .audio.features import MelFrontEnd, MelPreset
from .bitstream import CodesFile, CodesFormatError, bits_for, read_codes, write_codes
from .entropy_tables import TABLES_NAME, EntropyTablesError, ModelTables, load_tables, save_tables
from .model import CodecModel, build_model
from .nets.codec import CodecDecoder, CodecEncoder, decode_chunked

__all__ = [
    "DEFAULT_MODEL_DIR",
    "Codec",
    "CodecError",
    "load_codec",
    "model_hash",
    "save_codec",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "pretrained" / "default"
EXPORT_FORMAT = "sqcodec-codec"
EXPORT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
#: decode refuses a header whose restored output (channels x samples, float32) would exceed this: a hostile
#: file of a few bytes may claim a 10 MHz rate and 1,024 channels
MAX_DECODE_BYTES = 8 * 2**30
#: default length of an inference chunk (seconds of audio); codes do not depend on it
DEFAULT_CHUNK_SECONDS = 30.0

#: ``features (n_mels, T) -> wave``; a :class:`~sqcodec.vocoder.HifiGanVocoder` or any callable
Vocoder = Callable[[Tensor], Any]
#: what ``load_codec(vocoder=...)`` accepts: "auto" (the folder's HiFi-GAN unless its config.json says
#: ``"default_vocoder": "griffinlim"``, else Griffin-Lim), "hifigan" (the folder's HiFi-GAN, required),
#: "griffinlim" or None (Griffin-Lim), a vocoder folder path, or a callable
VocoderSpec = Vocoder | str | os.PathLike | None


class CodecError(ValueError):
    """A model that cannot be loaded or used as a codec, or a bad argument; one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _model_rate_length(orig_length: int, orig_rate: int, rate: int) -> int:
    """Samples at the model ``rate`` of an ``orig_length``-sample input at ``orig_rate`` (the length the
    streaming resampler gives, in all but rare cases: the encoder stores it in the header when not)."""
    return max(1, round(orig_length * rate / orig_rate))


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def model_hash(model: torch.nn.Module, model_config: dict, preset: MelPreset) -> str:
    """The canonical content hash of a model (see the module docstring)."""
    h = hashlib.sha256(b"sqcodec-model-v1\0")
    h.update(_json(model_config) + b"\0")
    h.update(_json(preset.to_dict()) + b"\0")
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}\0{str(t.dtype).removeprefix('torch.')}\0".encode())
        h.update(_json(list(state[name].shape)) + b"\0")
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CodecError(f"device {device!r} requested but CUDA is not available")
    return dev


class Codec:
    """A trained codec model ready for inference.

    ``model``: a :class:`CodecModel` whose encoder/decoder are the chunk-local codec nets
    (``type: codec``). ``preset``: its mel front-end (no per-file step and no standardisation, so chunked
    features equal whole-file features). ``model_id``: a human-readable name. ``model_sha256``: see
    :func:`model_hash`. ``vocoder``: ``features (n_mels, T) -> wave`` at the preset rate, or ``None`` for the
    Griffin-Lim fallback (``griffinlim_iters`` iterations). ``entropy_tables``: the model's fixed entropy
    tables (:mod:`sqcodec.entropy_tables`, one per layer) that :meth:`encode_file` may range-code with and
    :meth:`decode_file` then needs, or ``None`` (per-file tables or packing only).
    """

    def __init__(
        self,
        model: CodecModel,
        preset: str | MelPreset | dict,
        model_id: str = "unnamed",
        model_sha256: str | None = None,
        vocoder: Vocoder | None = None,
        device: str | torch.device | None = "cpu",
        griffinlim_iters: int = 32,
        entropy_tables: ModelTables | None = None,
    ) -> None:
        self.preset = get_preset(preset)
        if not isinstance(model.encoder, CodecEncoder) or not isinstance(model.decoder, CodecDecoder):
            raise CodecError(
                f"model {model_id!r} does not use the chunk-local codec nets (encoder/decoder type 'codec');"
                " it cannot be used as a file codec"
            )
        if self.preset.per_file or self.preset.normalisation != "none":
            raise CodecError(
                f"mel preset {self.preset.name!r} depends on the whole file or on training statistics;"
                " a codec needs a preset like 'codec16k'"
            )
        if model.config is None:
            raise CodecError(f"model {model_id!r} carries no config; build it with sqcodec.model.build_model")
        self.device = _resolve_device(device)
        self.model = model.to(self.device).eval()
        self.model_id = str(model_id)
        self.model_sha256 = model_sha256 or model_hash(model, model.config, self.preset)
        self.vocoder = vocoder
        self.griffinlim_iters = int(griffinlim_iters)
        self.frontend = MelFrontEnd(self.preset).to(self.device)
        if entropy_tables is not None and entropy_tables.codebook_sizes != self.codebook_sizes:
            raise CodecError(
                f"model {model_id!r}: its entropy tables are for codebooks {entropy_tables.codebook_sizes}, "
                f"the model has {self.codebook_sizes}"
            )
        self.entropy_tables = entropy_tables

    # ------------------------------------------------------------------ properties
    @property
    def num_layers(self) -> int:
        return int(self.model.quantizer.num_layers)

    @property
    def codebook_sizes(self) -> list[int]:
        return [int(k) for k in self.model.quantizer.codebook_sizes]

    @property
    def sample_rate(self) -> int:
        return self.preset.sample_rate

    @property
    def latent_rate(self) -> float:
        """Latents (code frames) per second: the frame rate over the encoder's stride."""
        return self.preset.frame_rate / self.model.encoder.stride

    def bits_per_second(self, layers: int | None = None) -> float:
        """Nominal bitrate of ``layers`` layers: ``latent_rate * sum_l ceil(log2 K_l)`` (what the packed
        ``.codes`` payload costs; entropy coding may make files smaller)."""
        n = self._layers(layers)
        return self.latent_rate * sum(bits_for(k) for k in self.codebook_sizes[:n])

    def _layers(self, layers: int | None) -> int:
        if layers is None:
            return self.num_layers
        if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= self.num_layers:
            raise CodecError(f"layers must be an integer in 1..{self.num_layers}, got {layers!r}")
        return layers

    def _chunk_latents(self, chunk_seconds: float) -> int:
        if not chunk_seconds > 0 or not math.isfinite(chunk_seconds):
            raise CodecError(f"chunk_seconds must be a positive number, got {chunk_seconds!r}")
        return max(1, round(chunk_seconds * self.latent_rate))

    # ------------------------------------------------------------------ arrays
    def encode_wave(self, wave: np.ndarray, layers: int | None = None, chunk_latents: int = 1024) -> Tensor:
        """Codes ``(L', num_latents)`` (int64, CPU) of one mono float32 waveform at the preset rate
        (chunked like :meth:`encode_blocks`; the result does not depend on ``chunk_latents``)."""
        n = int(wave.shape[-1])
        if n < self.preset.min_samples:
            raise AudioError(
                "<array>",
                f"too short: {n} samples at {self.sample_rate} Hz (needs {self.preset.min_samples})",
            )
        return self.encode_blocks([np.asarray(wave, dtype=np.float32)], layers, chunk_latents)[0]

    @torch.no_grad()
    def encode_blocks(
        self, blocks: Iterable[np.ndarray], layers: int | None = None, chunk_latents: int = 1024
    ) -> tuple[Tensor, int]:
        """Codes ``(L', num_latents)`` and the sample count of a mono waveform at the preset rate given as
        consecutive blocks of any sizes (e.g. read and resampled from a file), in bounded memory.

        For latents ``[a, b)`` the encoder runs on frames ``[2a - ctx, 2b + ctx)`` (``ctx``: its receptive
        field, rounded up to even), whose features come from :meth:`_segment_features`; a chunk is
        processed as soon as the samples it needs have arrived. Only the samples still needed are kept.
        """
        p, enc = self.preset, self.model.encoder
        keep = self._layers(layers)
        hop = p.hop_length
        margin = math.ceil(p.n_fft / 2 / hop) + 1
        ctx = 2 * math.ceil(enc.receptive_field / 2)
        it = iter(blocks)
        parts: list[np.ndarray] = []
        buf, buf_start, have, ended = np.zeros(0, np.float32), 0, 0, False
        n = t = n_lat = None
        out = []
        a = 0
        with self.model._eval_mode():
            while True:
                b = a + chunk_latents
                need = (2 * b + ctx - 1 + margin) * hop + 1  # sample end the chunk needs inside the file
                while not ended and have < need:
                    try:
                        block = np.asarray(next(it), dtype=np.float32).reshape(-1)
                    except StopIteration:
                        ended = True
                        break
                    parts.append(block)
                    have += len(block)
                if parts:
                    buf = np.concatenate([buf, *parts])
                    parts = []
                if ended and n is None:
                    n = have
                    if n < p.min_samples:
                        raise AudioError(
                            "<stream>",
                            f"too short: {n} samples at {p.sample_rate} Hz (needs {p.min_samples})",
                        )
                    t = p.num_frames(n)
                    n_lat = math.ceil(t / enc.stride)
                if n_lat is not None:
                    if a >= n_lat:
                        break
                    b = min(b, n_lat)
                f0 = max(0, 2 * a - ctx)
                f1 = 2 * b + ctx if t is None else min(t, 2 * b + ctx)
                feats = self._segment_features(buf, buf_start, n, f0, f1).float()[None]
                h = enc(feats)
                z, log_var = self.model._split(h[..., a - f0 // 2 : b - f0 // 2])
                out.append(self.model.quantizer.encode(z, log_var=log_var, layers=keep)[0].cpu())
                a = b
                drop = max(0, max(0, 2 * a - ctx) - margin) * hop - buf_start  # samples no chunk needs
                if drop > 0:
                    buf, buf_start = buf[drop:], buf_start + drop
        return torch.cat(out, dim=-1), int(n)

    def features(self, wave: np.ndarray, start: int, stop: int) -> Tensor:
        """Features ``(n_mels, stop - start)`` (float64) of frames ``[start, stop)`` of a whole mono wave at
        the preset rate, computed from only the samples they need (see :meth:`_segment_features`)."""
        t = self.preset.num_frames(int(wave.shape[-1]))
        if not 0 <= start < stop <= t:
            raise CodecError(f"frames [{start}, {stop}) are outside [0, {t})")
        return self._segment_features(np.asarray(wave), 0, int(wave.shape[-1]), start, stop)

    def _segment_features(
        self, buf: np.ndarray, buf_start: int, n: int | None, start: int, stop: int
    ) -> Tensor:
        """Frames ``[start, stop)`` from ``buf``, the samples from ``buf_start`` on of a wave of ``n``
        samples (``None``: longer than the samples needed). Equal to the same frames of the whole-wave
        features up to float64 rounding: the centred STFT reflect-pads a segment at its edges, which
        changes frames within ``n_fft / 2`` samples of an edge, so the segment starts and ends
        ``ceil(n_fft / 2 / hop) + 1`` frames beyond the requested ones (unless that is a file edge, where
        the padding is the whole-file padding) and those margin frames are cropped."""
        p = self.preset
        hop = p.hop_length
        margin = math.ceil(p.n_fft / 2 / hop) + 1
        g0 = max(0, start - margin)  # first frame of the segment
        s0, s1 = g0 * hop, (stop - 1 + margin) * hop + 1
        if n is not None:
            s1 = min(n, s1)
        if s0 < buf_start or s1 > buf_start + len(buf):  # pragma: no cover - guards the caller's arithmetic
            raise RuntimeError(
                f"samples [{s0}, {s1}) are not buffered ([{buf_start}, {buf_start + len(buf)}))"
            )
        seg = np.ascontiguousarray(buf[s0 - buf_start : s1 - buf_start])
        feats = self.frontend(torch.from_numpy(seg).to(self.device, torch.float64))[:, start - g0 : stop - g0]
        if feats.shape[-1] != stop - start:  # pragma: no cover - guards the arithmetic above
            raise RuntimeError(f"feature segment has {feats.shape[-1]} frames, expected {stop - start}")
        return feats

    def _prepare(self, wave: Tensor | np.ndarray, sr: int) -> list[np.ndarray]:
        arr = wave.detach().cpu().numpy() if isinstance(wave, Tensor) else np.asarray(wave)
        if arr.ndim == 1:
            arr = arr[None]
        elif arr.ndim == 3:  # (B, C, samples): downmix
            arr = arr.mean(axis=1)
        if arr.ndim != 2 or arr.shape[-1] == 0 or arr.shape[0] == 0:
            raise AudioError("<array>", f"want (samples,), (B, samples) or (B, C, samples), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise AudioError("<array>", f"want float samples in [-1, 1], got {arr.dtype}")
        if not np.isfinite(arr).all():
            raise AudioError("<array>", "NaN/inf sample values")
        if int(sr) != sr or sr <= 0:
            raise CodecError(f"invalid sample rate {sr!r}")
        return [resample(row, int(sr), self.sample_rate).astype(np.float32) for row in arr]

    def encode(
        self,
        wave: Tensor | np.ndarray,
        sr: int,
        layers: int | None = None,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    ) -> Tensor:
        """Codes ``(B, L', num_latents)`` (int64) of ``(samples,)``, ``(B, samples)`` (a batch of streams)
        or ``(B, C, samples)`` (channels downmixed by mean) audio at ``sr`` Hz (resampled with soxr HQ)."""
        rows = self._prepare(wave, sr)
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:  # pragma: no cover - rows share a length by construction
            raise CodecError("batch rows differ in length")
        chunk = self._chunk_latents(chunk_seconds)
        return torch.stack([self.encode_wave(r, layers, chunk) for r in rows])

    @torch.no_grad()
    def decode(
        self, codes: Tensor | np.ndarray, layers: int | None = None, length: int | None = None
    ) -> Tensor:
        """Features ``(B, n_mels, T)`` from codes ``(B, L', N)`` or ``(L', N)`` (first ``layers`` used);
        ``T = 2N`` unless ``length`` crops it."""
        c = torch.as_tensor(np.asarray(codes) if not isinstance(codes, Tensor) else codes)
        if c.dim() == 2:
            c = c[None]
        if c.dim() != 3 or c.shape[1] < 1 or c.shape[1] > self.num_layers:
            raise CodecError(
                f"codes must be (B, L', N) with 1 <= L' <= {self.num_layers}, got {tuple(c.shape)}"
            )
        c = c.long()
        for layer, k in enumerate(self.codebook_sizes[: c.shape[1]]):
            if c[:, layer].numel() and (int(c[:, layer].min()) < 0 or int(c[:, layer].max()) >= k):
                raise CodecError(f"layer {layer} holds indices outside [0, {k})")
        if layers is not None:
            keep = self._layers(layers)
            if keep > c.shape[1]:
                raise CodecError(f"codes hold {c.shape[1]} layers; cannot decode {keep}")
            c = c[:, :keep]
        c = c.to(self.device)
        with self.model._eval_mode():
            z = self.model.quantizer.decode(c)
            y = decode_chunked(self.model.decoder, z, 4096)
        y = y.float().cpu()
        return y if length is None else y[..., :length]

    def vocode(self, features: Tensor, length: int | None = None) -> np.ndarray:
        """One ``(n_mels, T)`` feature map -> float32 wave at the preset rate (the vocoder, else
        Griffin-Lim)."""
        if self.vocoder is not None:
            vocode = getattr(self.vocoder, "vocode", self.vocoder)
            w = vocode(features.to(self.device))
            w = w.detach().cpu().numpy() if isinstance(w, Tensor) else np.asarray(w)
            w = w.reshape(-1).astype(np.float32)
            if length is not None:
                w = w[:length] if len(w) >= length else np.pad(w, (0, length - len(w)))
            return w
        from .vocoder.griffinlim import griffin_lim

        return griffin_lim(features.cpu(), self.preset.name, n_iter=self.griffinlim_iters, length=length)

    def decode_audio(
        self, codes: Tensor | np.ndarray, layers: int | None = None, length: int | None = None
    ) -> np.ndarray:
        """Waveform(s) ``(B, samples)`` at the preset rate from codes ``(B, L', N)`` or ``(L', N)``."""
        feats = self.decode(codes, layers)
        return np.stack([self.vocode(f, length) for f in feats])

    # ------------------------------------------------------------------ files
    def encode_file(
        self,
        in_path: str | os.PathLike,
        out_path: str | os.PathLike,
        layers: int | None = None,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    ) -> CodesFile:
        """Encode an audio file into a ``.codes`` file (written atomically; nothing left on error)."""
        keep = self._layers(layers)
        chunk = self._chunk_latents(chunk_seconds)
        info = audio_info(in_path)
        try:
            codes, n = self.encode_blocks(
                read_mono_blocks(in_path, self.sample_rate, STREAM_BLOCK), keep, chunk
            )
        except AudioError as err:
            if err.path == "<stream>":
                resampled = " after resampling" if info.sample_rate != self.sample_rate else ""
                raise AudioError(in_path, f"{err.problem}{resampled}") from None
            raise
        cf = CodesFile(
            codes=codes.numpy(),
            codebook_sizes=self.codebook_sizes[:keep],
            model_id=self.model_id,
            model_sha256=self.model_sha256,
            preset=self.preset.name,
            sample_rate=self.sample_rate,
            hop=self.preset.hop_length,
            latent_rate=self.latent_rate,
            orig_sample_rate=info.sample_rate,
            orig_channels=info.channels,
            orig_length=info.num_samples,
            gain=1.0,
            chunk_latents=chunk,
            # the length at the model rate only where decode could not derive it from orig_length
            meta={}
            if n == _model_rate_length(info.num_samples, info.sample_rate, self.sample_rate)
            else {"num_samples": n},
        )
        write_codes(out_path, cf, model_tables=self.entropy_tables)
        return cf

    def decode_file(
        self, codes_path: str | os.PathLike, out_path: str | os.PathLike, layers: int | None = None
    ) -> np.ndarray:
        """Decode a ``.codes`` file to audio at its original rate, channel count, length and gain.

        Refuses codes from another model (sha256 check). Returns the written ``(channels, samples)``."""
        cf = read_codes(
            codes_path, layers=layers, expected_model_hash=self.model_sha256, model_tables=self.entropy_tables
        )
        if cf.preset != self.preset.name:  # pragma: no cover - the hash covers the preset
            raise CodecError(f"{codes_path}: codes use preset {cf.preset!r}, the model {self.preset.name!r}")
        stride = self.model.encoder.stride
        n = cf.meta.get("num_samples")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            n = _model_rate_length(cf.orig_length, cf.orig_sample_rate, self.sample_rate)
        frames = self.preset.num_frames(n)
        # the lengths come from the file: check them against the codes before allocating anything
        orig_seconds = cf.orig_length / cf.orig_sample_rate
        if math.ceil(frames / stride) != cf.num_latents or abs(orig_seconds - cf.duration) > 1.0:
            raise CodesFormatError(
                codes_path,
                f"header lengths are inconsistent ({cf.orig_length} samples at {cf.orig_sample_rate} Hz, "
                f"{n} at {self.sample_rate} Hz, {cf.num_latents} latents)",
            )
        out_bytes = cf.orig_length * cf.orig_channels * 4
        if out_bytes > MAX_DECODE_BYTES:
            raise CodesFormatError(
                codes_path,
                f"the header asks for {cf.orig_channels} channels x {cf.orig_length} samples at "
                f"{cf.orig_sample_rate} Hz ({out_bytes / 2**30:.1f} GiB of output; the limit is "
                f"{MAX_DECODE_BYTES / 2**30:.0f} GiB)",
            )
        feats = self.decode(torch.from_numpy(cf.codes)[None], length=frames)[0]
        wave = self.vocode(feats, length=n)
        wave = resample(wave, self.sample_rate, cf.orig_sample_rate)
        m = cf.orig_length
        wave = wave[:m] if len(wave) >= m else np.pad(wave, (0, m - len(wave)))
        wave = (wave * cf.gain).astype(np.float32)
        out = np.repeat(wave[None], cf.orig_channels, axis=0)
        write_audio(out_path, out, cf.orig_sample_rate)
        return out


# ------------------------------------------------------------------------------------ streamed reading

#: input frames read per block by :func:`read_mono_blocks` (codes depend on neither this nor the chunking)
STREAM_BLOCK = 1 << 16


def read_mono_blocks(
    path: str | os.PathLike, target_sr: int, block: int = STREAM_BLOCK
) -> Iterator[np.ndarray]:
    """Yield the file as mono float32 blocks at ``target_sr``, reading ``block`` frames at a time.

    Same samples as :func:`sqcodec.audio.load_mono` (mean downmix in float64, soxr HQ resampling; soxr's
    stream gives the one-shot result) with the same checks (missing, empty, unreadable, truncated WAV,
    fewer samples than declared, NaN/inf), raised as :class:`AudioError` naming the file, while holding
    only one block in memory.
    """
    import soundfile as sf
    import soxr

    from .audio.io import RESAMPLE_QUALITY, _check_wav_truncation, _open_error

    path = Path(path)
    info = audio_info(path)  # missing / empty / unreadable
    if info.format == "WAV":
        _check_wav_truncation(path)
    if info.num_samples == 0:
        raise AudioError(path, "no audio samples (zero length)")
    sr = info.sample_rate
    stream = (
        None
        if sr == target_sr
        else soxr.ResampleStream(sr, target_sr, 1, dtype="float64", quality=RESAMPLE_QUALITY)
    )
    done = 0
    try:
        f = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise _open_error(path, exc) from None
    with f:
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as exc:
                raise _open_error(path, exc) from None
            last = len(data) < block or done + len(data) >= info.num_samples
            finite = np.isfinite(data)
            if not finite.all():
                bad = int(data.size - np.count_nonzero(finite))
                first = done + int(np.argmin(finite.all(axis=1)))  # the first frame holding one
                raise AudioError(
                    path, f"NaN/inf sample values ({bad} in this block, first at {first / sr:.2f} s)"
                )
            mono = data.mean(axis=1, dtype=np.float64) if data.shape[1] > 1 else data[:, 0]
            done += len(data)
            if stream is None:
                out = mono.astype(np.float32)
            else:
                out = stream.resample_chunk(mono.astype(np.float64), last=last).astype(np.float32)
            if len(out):
                yield out
            if last:
                break
    if done < info.num_samples:
        raise AudioError(
            path, f"truncated file: header declares {info.num_samples} samples, only {done} decoded"
        )


# ---------------------------------------------------------------------------------------- load / save


def _build(model_cfg: Any, where: str) -> CodecModel:
    if not isinstance(model_cfg, dict) or not model_cfg:
        raise CodecError(f"{where}: holds no model config")
    try:
        return build_model(model_cfg)
    except (ValueError, TypeError, KeyError) as err:
        raise CodecError(f"{where}: cannot build the model from its config ({err})") from None


def _load_weights(model: CodecModel, state: dict, where: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CodecError(f"{where}: weights do not fit the model config ({first})") from None


def _preset_of(cfg: dict) -> str | dict:
    data = cfg.get("data") or {}
    preset = data.get("preset") if isinstance(data, dict) else None
    return preset or "codec16k"


def _load_checkpoint(path: Path, device: Any, vocoder: Vocoder | None) -> Codec:
    from .train.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path, map_location="cpu")
    except CheckpointError as err:
        cause = err.__cause__
        if cause is not None and not isinstance(cause, FileNotFoundError):  # torch's messages run long
            raise CodecError(
                f"{path}: not a loadable weights-only sqcodec checkpoint ({type(cause).__name__})"
            ) from None
        raise CodecError(str(err)) from None
    cfg = ckpt.get("config") or {}
    model = _build(cfg.get("model"), str(path))
    _load_weights(model, ckpt.get("model") or {}, str(path))
    try:
        preset = get_preset(_preset_of(cfg))
    except (KeyError, ValueError, TypeError) as err:
        raise CodecError(f"{path}: bad mel preset in the checkpoint config ({err})") from None
    step = ckpt.get("step")
    model_id = (
        f"{path.parent.parent.name if path.parent.name == 'checkpoints' else path.parent.name}/{path.stem}"
    )
    if isinstance(step, int) and f"{step:08d}" not in path.stem:
        model_id += f"@{step}"
    return Codec(model, preset, model_id=model_id, vocoder=vocoder, device=device)


def _load_folder(folder: Path, device: Any, vocoder: Vocoder | None) -> Codec:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .train.checkpoint import read_export_config

    cfg_path = folder / CONFIG_NAME
    try:
        cfg, weights = read_export_config(
            folder, CONFIG_NAME, WEIGHTS_NAME, EXPORT_FORMAT, EXPORT_VERSION, "codec"
        )
    except ValueError as err:
        raise CodecError(str(err)) from None
    model = _build(cfg.get("model"), str(cfg_path))
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CodecError(f"{weights}: cannot read the weights ({err})") from None
    _load_weights(model, state, str(weights))
    try:
        preset = get_preset(cfg.get("preset") or "codec16k")
    except (KeyError, ValueError, TypeError) as err:
        raise CodecError(f"{cfg_path}: bad mel preset ({err})") from None
    codec = Codec(
        model, preset, model_id=str(cfg.get("model_id") or folder.name), vocoder=vocoder, device=device
    )
    expected = cfg.get("model_sha256")
    if expected is not None and expected != codec.model_sha256:
        raise CodecError(
            f"{folder}: the weights do not match config.json (sha256 {codec.model_sha256[:12]}..., "
            f"config says {str(expected)[:12]}...)"
        )
    codec.entropy_tables = _load_folder_tables(folder / TABLES_NAME, codec)
    return codec


def _load_folder_tables(path: Path, codec: Codec) -> ModelTables | None:
    """The folder's ``entropy_tables.json`` checked against the model, or ``None`` when it has none."""
    if not path.is_file():
        return None
    try:
        tables = load_tables(path)
    except EntropyTablesError as err:
        raise CodecError(str(err)) from None
    if tables.codebook_sizes != codec.codebook_sizes:
        raise CodecError(
            f"{path}: tables for codebooks {tables.codebook_sizes}, the model has {codec.codebook_sizes}"
        )
    if tables.model_sha256 is not None and tables.model_sha256 != codec.model_sha256:
        raise CodecError(
            f"{path}: built from the codes of model sha256 {tables.model_sha256[:12]}..., "
            f"this model is sha256 {codec.model_sha256[:12]}..."
        )
    return tables


def _folder_config(folder: Path) -> dict:
    try:
        cfg = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _resolve_vocoder(
    spec: VocoderSpec, folder: Path | None, device: Any, preset: MelPreset
) -> Vocoder | None:
    """``load_codec``'s ``vocoder`` argument -> a vocoder (``None`` = Griffin-Lim)."""
    from .vocoder.hifigan import VOCODER_CONFIG, VocoderError, load_vocoder

    if spec is None or (isinstance(spec, str) and spec == "griffinlim"):
        return None
    if isinstance(spec, str) and spec in ("auto", "hifigan"):
        has = folder is not None and (folder / VOCODER_CONFIG).is_file()
        if spec == "hifigan" and not has:
            raise CodecError(
                f"{folder or 'the checkpoint'}: the model has no HiFi-GAN vocoder (pass a vocoder folder)"
            )
        if not has:
            return None
        if spec == "auto" and _folder_config(folder).get("default_vocoder") == "griffinlim":
            return None
        spec = folder
    if callable(spec):
        return spec
    try:
        vocoder = load_vocoder(Path(spec), device=_resolve_device(device))
    except VocoderError as err:
        raise CodecError(str(err)) from None
    if vocoder.preset != preset:
        raise CodecError(
            f"{spec}: the vocoder was trained on mel preset {vocoder.preset.name!r}, the model uses "
            f"{preset.name!r}"
        )
    return vocoder


def load_codec(
    path_or_name: str | os.PathLike | None = None,
    device: str | torch.device | None = "cpu",
    vocoder: VocoderSpec = "auto",
) -> Codec:
    """Load a codec from a training checkpoint (``.pt``, weights-only), an exported folder
    (``model.safetensors`` + ``config.json``, optionally ``vocoder.safetensors`` + ``vocoder.json``) or,
    for ``None``, the embedded default model (RSQ-VAE + HiFi-GAN).

    ``vocoder``: ``"auto"`` (the folder's own HiFi-GAN unless its config names Griffin-Lim as the default,
    else Griffin-Lim), ``"hifigan"`` (the folder's own, required), ``"griffinlim"``/``None``, a vocoder
    folder (:func:`sqcodec.vocoder.load_vocoder`) or a callable ``(n_mels, T) -> wave``.
    Raises :class:`CodecError` (one line naming the file) when it cannot.
    """
    if path_or_name is None:
        if not (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file():
            raise CodecError(
                f"no embedded default model is installed ({DEFAULT_MODEL_DIR} is empty): "
                "pass a trained model with --model PATH (a training checkpoint .pt or a save_codec folder)"
            )
        folder: Path | None = DEFAULT_MODEL_DIR
        codec = _load_folder(DEFAULT_MODEL_DIR, device, None)
    else:
        path = Path(path_or_name)
        if path.is_dir():
            folder = path
            codec = _load_folder(path, device, None)
        elif path.is_file():
            folder = None
            codec = _load_checkpoint(path, device, None)
        else:
            raise CodecError(f"{path}: no such model file or folder")
    codec.vocoder = _resolve_vocoder(vocoder, folder, device, codec.preset)
    return codec


def save_codec(codec: Codec, folder: str | os.PathLike, default_vocoder: str = "hifigan") -> Path:
    """Export ``codec`` as ``folder/model.safetensors`` + ``folder/config.json`` (each written atomically),
    plus ``vocoder.safetensors`` + ``vocoder.json`` when its vocoder is a HiFi-GAN and
    ``entropy_tables.json`` when it has entropy tables (a stale one is removed when it has none).

    The config holds the model config, the preset, the model id and its sha256 (checked on load)."""
    from safetensors.torch import save

    from .train.checkpoint import atomic_write, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in codec.model.state_dict().items()}
    data = save(state, metadata={"format": EXPORT_FORMAT, "model_sha256": codec.model_sha256})
    atomic_write(folder / WEIGHTS_NAME, lambda f: f.write(data))
    cfg = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "model_id": codec.model_id,
        "model_sha256": codec.model_sha256,
        "preset": codec.preset.to_dict(),
        "model": codec.model.config,
        "latent_rate": codec.latent_rate,
        "codebook_sizes": codec.codebook_sizes,
        "default_vocoder": default_vocoder,
    }
    atomic_write_text(folder / CONFIG_NAME, json.dumps(cfg, indent=1, sort_keys=True) + "\n")
    if codec.entropy_tables is not None:
        save_tables(codec.entropy_tables, folder / TABLES_NAME)
    else:
        (folder / TABLES_NAME).unlink(missing_ok=True)
    from .vocoder.hifigan import HifiGanVocoder, save_vocoder

    if isinstance(codec.vocoder, HifiGanVocoder):
        save_vocoder(codec.vocoder, folder)
    return folder
