"""Features for :mod:`sqcodec.eval.abx`: a folder of per-file matrices, or representations computed from
audio by an sqcodec model.

**Feature folders** hold one file per item-file ``#file`` id, found recursively by stem: ``<id>.npy``
(a ``(frames, dims)`` array; ``(frames,)`` is read as one dimension) or ``<id>.txt`` (one frame per line,
space-separated values: the ZeroSpeech 2019 submission format, as written by ``np.savetxt``). They carry
no timestamps: frame ``i`` is taken to cover ``[t0 + i·shift, t0 + (i+1)·shift)`` with the shift and ``t0``
given by the user (Libri-Light's ``--feature_size``; ``t0 = 0`` as Libri-Light assumes).

**Model representations** (:class:`ModelFeatures`), computed from the whole file at the model's preset
rate (soxr resampling, channels downmixed), with the model in eval mode:

* ``continuous``: the encoder output ``z`` (``d_b`` dims; the variance head of Gaussian SQ II-IV is dropped);
* ``quantized``: the codewords of the deterministic codes, summed over the first ``layers`` layers (RSQ);
* ``codes``: the code indices of the first ``layers`` layers, ``(frames, layers)`` (for ``distance="codes"``);
* ``mel``: the model's own log-mel input features (a baseline; no model is needed with ``preset``).

Time axis: mel frame ``i`` of a centred STFT is centred on sample ``i·hop``; a latent ``j`` of an encoder
with input crop ``c`` and stride ``s`` is centred on mel frame ``c + s·j + (s-1)/2`` (the codec nets:
``2j + 0.5``, i.e. 8 + 32·j ms for the default 31.25 Hz latents). The frame shift is ``s·hop/rate`` and
``t0`` = centre of frame 0 − shift/2, so item frames are selected on the true frame times.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .abx import ABXError, Item

__all__ = [
    "AUDIO_EXTENSIONS",
    "FEATURE_EXTENSIONS",
    "REPRESENTATIONS",
    "ModelFeatures",
    "compute_features",
    "find_files",
    "load_feature_dir",
    "load_feature_file",
    "save_features",
]

FEATURE_EXTENSIONS = (".npy", ".txt")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus", ".oga")
REPRESENTATIONS = ("continuous", "quantized", "codes", "mel")


def _first_lines(items: Iterable[Item]) -> dict[str, int]:
    first: dict[str, int] = {}
    for it in items:
        first.setdefault(it.file, it.line)
    return first


def find_files(
    folder: str | os.PathLike,
    items: Iterable[Item],
    extensions: tuple[str, ...],
    item_file: str | os.PathLike = "item file",
    kind: str = "feature",
) -> dict[str, Path]:
    """Map each ``#file`` id of ``items`` to ``<folder>/**/<id><ext>``. One-line :class:`ABXError` when the
    folder is missing, a file is missing (naming the item-file line) or an id matches several files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ABXError(f"{folder}: {kind} folder not found")
    wanted = _first_lines(items)
    found: dict[str, Path] = {}
    exts = {e.lower() for e in extensions}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() not in exts or stem not in wanted:
                continue
            path = Path(root) / name
            if stem in found:
                raise ABXError(f"{path}: {kind} file id {stem!r} is also {found[stem]} (ids must be unique)")
            found[stem] = path
    for fid, line in wanted.items():
        if fid not in found:
            raise ABXError(
                f"{item_file}:{line}: no {kind} file for {fid!r} in {folder} ({'/'.join(sorted(exts))})"
            )
    return found


def load_feature_file(path: str | os.PathLike) -> np.ndarray:
    """One feature matrix ``(frames, dims)`` from ``.npy`` or ``.txt`` (finite numbers, >= 1 frame)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ABXError(f"{path}: cannot read the features ({first})") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ABXError(f"{path}: want a (frames, dims) matrix, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ABXError(f"{path}: want numbers, got dtype {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ABXError(f"{path}: empty feature matrix {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ABXError(f"{path}: NaN/inf feature values")
    return arr


def check_for_distance(features: dict[str, np.ndarray], paths: dict[str, Any], distance: str) -> None:
    """Feature dims agree across files, codes are integers, posteriorgrams are non-negative."""
    dims: tuple[int, str] | None = None
    for fid, arr in features.items():
        where = paths.get(fid, fid)
        if dims is None:
            dims = (arr.shape[1], str(where))
        elif arr.shape[1] != dims[0]:
            raise ABXError(f"{where}: {arr.shape[1]} feature dims, but {dims[1]} has {dims[0]}")
        if distance == "codes" and arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            raise ABXError(f"{where}: the codes distance needs integer code indices")
        if distance == "kl":
            if (arr < 0).any():
                raise ABXError(f"{where}: the kl distance needs non-negative posteriorgrams")
            if (arr.sum(-1) <= 0).any():
                raise ABXError(f"{where}: the kl distance needs frames with a positive sum")


def load_feature_dir(
    folder: str | os.PathLike,
    items: Iterable[Item],
    extension: str | None = None,
    item_file: str | os.PathLike = "item file",
) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """Load the feature file of every ``#file`` id of ``items`` from ``folder`` (``extension``: ``.npy``
    or ``.txt``; ``None`` picks the one the folder holds). Returns ``(features, paths)``."""
    items = list(items)
    if extension is None:
        folder_p = Path(folder)
        if not folder_p.is_dir():
            raise ABXError(f"{folder_p}: feature folder not found")
        present = {p.suffix.lower() for p in folder_p.rglob("*") if p.suffix.lower() in FEATURE_EXTENSIONS}
        if len(present) > 1:
            raise ABXError(f"{folder_p}: holds both .npy and .txt files; choose one with --ext")
        extension = present.pop() if present else ".npy"
    extension = extension if extension.startswith(".") else "." + extension
    if extension.lower() not in FEATURE_EXTENSIONS:
        raise ABXError(f"unsupported feature extension {extension!r} (use .npy or .txt)")
    paths = find_files(folder, items, (extension,), item_file)
    return {fid: load_feature_file(p) for fid, p in paths.items()}, paths


def save_features(features: dict[str, np.ndarray], folder: str | os.PathLike) -> Path:
    """Write ``<folder>/<id>.npy`` for every file (each atomically); creates the folder."""
    from ..audio import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for fid, arr in features.items():
        with atomic_write(folder / f"{fid}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, arr)
    return folder


# --------------------------------------------------------------------------------------------- models


@dataclass
class _Loaded:
    model: Any
    preset: Any
    model_id: str
    stats: Any = None


def _load_model(model: str | os.PathLike | None, device: str, stats: str | os.PathLike | None) -> _Loaded:
    import torch

    from ..codec import CodecError, _build, _load_weights, _preset_of, load_codec

    stats_obj = _load_stats(stats) if stats is not None else None
    if model is None or str(model) == "default" or Path(model).is_dir():
        try:
            codec = load_codec(None if model in (None, "default") else model, device=device, vocoder=None)
        except CodecError as err:
            raise ABXError(str(err)) from None
        return _Loaded(codec.model, codec.preset, codec.model_id, stats_obj)
    path = Path(model)
    if not path.is_file():
        raise ABXError(f"{path}: no such model file or folder")
    from ..audio import get_preset
    from ..train.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path, map_location="cpu")
    except CheckpointError as err:
        cause = err.__cause__
        if cause is not None and not isinstance(cause, FileNotFoundError):
            raise ABXError(f"{path}: not a loadable weights-only sqcodec checkpoint") from None
        raise ABXError(str(err)) from None
    cfg = ckpt.get("config") or {}
    try:
        net = _build(cfg.get("model"), str(path))
        _load_weights(net, ckpt.get("model") or {}, str(path))
        preset = get_preset(_preset_of(cfg))
    except CodecError as err:
        raise ABXError(str(err)) from None
    except (KeyError, ValueError, TypeError) as err:
        raise ABXError(f"{path}: bad mel preset in the checkpoint config ({err})") from None
    if stats_obj is None:
        spec = (cfg.get("data") or {}).get("stats") if isinstance(cfg.get("data"), dict) else None
        if spec:
            exp = path.parent.parent if path.parent.name == "checkpoints" else path.parent
            candidate = exp / "stats.json" if spec == "auto" else Path(str(spec))
            if not candidate.is_file():
                raise ABXError(
                    f"{path}: the model was trained on standardised features ({spec}) but {candidate} "
                    "is missing; pass the training statistics with --stats"
                )
            stats_obj = _load_stats(candidate)
    net = net.to(torch.device(device)).eval()
    stem = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
    return _Loaded(net, preset, f"{stem}/{path.stem}", stats_obj)


def _load_stats(path: str | os.PathLike) -> Any:
    from ..train.data import DataError, load_stats

    try:
        return load_stats(path)
    except DataError as err:
        raise ABXError(str(err)) from None


class ModelFeatures:
    """Callable ``path -> (frames, dims)`` array of one representation of an audio file.

    ``model``: ``None``/``"default"`` (the embedded default), an exported codec folder or a training
    checkpoint (any sqcodec 1-D model: codec or speech nets). ``representation="mel"`` with ``preset``
    and no ``model`` needs no model. ``layers``: code layers kept (quantized/codes; default all).
    ``stats``: training statistics for presets whose features were standardised.
    Attributes ``shift`` and ``t0`` (seconds) give the time axis; ``description`` says what it is.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        representation: str = "continuous",
        layers: int | None = None,
        device: str = "cpu",
        preset: str | None = None,
        stats: str | os.PathLike | None = None,
    ) -> None:
        from ..audio import get_preset

        if representation not in REPRESENTATIONS:
            raise ABXError(f"unknown representation {representation!r} (known: {', '.join(REPRESENTATIONS)})")
        if layers is not None and representation not in ("quantized", "codes"):
            raise ABXError(
                f"--layers applies to the quantized and codes representations, not {representation}"
            )
        self.representation = representation
        self.device = device
        if representation == "mel" and model is None and preset is not None:
            try:
                self.preset = get_preset(preset)
            except (KeyError, ValueError) as err:
                raise ABXError(f"unknown mel preset {preset!r} ({err})") from None
            self.model = None
            self.stats = _load_stats(stats) if stats is not None else None
            model_id = None
        else:
            if preset is not None:
                raise ABXError("--preset is only for --representation mel without --model")
            loaded = _load_model(model, device, stats)
            self.model, self.preset, self.stats, model_id = (
                loaded.model,
                loaded.preset,
                loaded.stats,
                loaded.model_id,
            )
        if self.preset.normalisation == "standardise" and self.stats is None:
            raise ABXError(
                f"mel preset {self.preset.name!r} is standardised with training statistics: "
                "pass them with --stats"
            )
        p = self.preset
        frame_shift = p.hop_length / p.sample_rate
        # centre (seconds) of mel frame i: i*hop (centred STFT), else the window centre
        first_centre = 0.0 if p.center else (p.n_fft / 2 - p.pad) / p.sample_rate
        self.layers = None
        if representation == "mel":
            self.shift = frame_shift
            self.t0 = first_centre - self.shift / 2
            self.crop = (0, 0)
        else:
            enc, q = self.model.encoder, self.model.quantizer
            stride = getattr(enc, "stride", None)
            if not isinstance(stride, int) or stride < 1:
                raise ABXError(f"{model_id}: the model's encoder has no integer time stride")
            self.crop = tuple(getattr(enc, "crop", (0, 0)))
            if representation in ("quantized", "codes"):
                n = int(getattr(q, "num_layers", 1))
                if layers is not None and not 1 <= layers <= n:
                    raise ABXError(f"--layers must be in 1..{n} for this model, got {layers}")
                self.layers = layers if layers is not None else n
            self.shift = stride * frame_shift
            centre0 = first_centre + (self.crop[0] + (stride - 1) / 2) * frame_shift
            self.t0 = centre0 - self.shift / 2
        what = {"continuous": "encoder outputs z", "quantized": "quantised vectors", "codes": "code indices"}
        if representation == "mel":
            self.description = f"log-mel features, preset {p.name}"
        else:
            self.description = f"{what[representation]} of model {model_id}"
        if self.layers is not None:
            self.description += f", {self.layers} layer(s)"
        self.description += f"; shift {self.shift * 1000:g} ms, t0 {self.t0 * 1000:g} ms"

    def mel(self, path: str | os.PathLike) -> np.ndarray:
        """``(n_mels, frames)`` float32 model input for an audio file: read with
        :func:`sqcodec.audio.load_mono` (validated, downmixed, soxr-resampled), front-end in float64 as
        :class:`sqcodec.codec.Codec` computes it, standardised when stats are set."""
        import torch

        from ..audio import AudioError, load_mono, mel_features

        wave, _ = load_mono(path, self.preset.sample_rate)
        if wave.shape[-1] < self.preset.min_samples:
            raise AudioError(
                str(path),
                f"too short for mel preset {self.preset.name!r}: {wave.shape[-1]} samples "
                f"(needs at least {self.preset.min_samples})",
            )
        feats = mel_features(torch.from_numpy(wave).to(torch.float64), self.preset).float().numpy()
        if self.stats is not None:
            feats = self.stats.apply(feats)
        return feats

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        import torch

        feats = self.mel(path)
        if self.representation == "mel":
            return np.ascontiguousarray(feats.T)
        from ..nets.speech import SpeechEncoder

        enc = self.model.encoder
        if isinstance(enc, SpeechEncoder):  # needs T + 2 frames with T even
            t = feats.shape[-1] - 2
            t -= t % 2
            if t <= 0:
                raise ABXError(f"{path}: too short for the model ({feats.shape[-1]} frames)")
            feats = feats[:, : t + 2]
        x = torch.from_numpy(np.ascontiguousarray(feats))[None].to(self.device, torch.float32)
        try:
            with torch.no_grad(), self.model._eval_mode():
                z, log_var = self.model._split(enc(x))
                if z.dim() != 3:
                    raise ABXError(f"{path}: the encoder output {tuple(z.shape)} has no single time axis")
                if self.representation == "continuous":
                    out = z[0].T
                else:
                    codes = self.model.quantizer.encode(z, log_var=log_var, layers=self.layers)
                    out = (
                        codes[0].T
                        if self.representation == "codes"
                        else self.model.quantizer.decode(codes)[0].T
                    )
        except (ValueError, RuntimeError, TypeError) as err:
            if isinstance(err, ABXError):
                raise
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ABXError(f"{path}: the model cannot compute {self.representation} ({first})") from None
        arr = out.detach().cpu().numpy()
        return np.ascontiguousarray(arr.astype(np.int64 if self.representation == "codes" else np.float32))


def compute_features(
    audio_folder: str | os.PathLike,
    items: Iterable[Item],
    extractor: Callable[[Path], np.ndarray],
    item_file: str | os.PathLike = "item file",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """Run ``extractor`` on ``<audio_folder>/**/<id>.<audio ext>`` for every ``#file`` id of ``items``."""
    paths = find_files(audio_folder, items, AUDIO_EXTENSIONS, item_file, kind="audio")
    out: dict[str, np.ndarray] = {}
    for k, (fid, p) in enumerate(sorted(paths.items()), start=1):
        out[fid] = extractor(p)
        if progress is not None:
            progress(k, len(paths))
    return out, paths
