"""Training and validation features: sources, speaker ids, standardisation, deterministic random crops.

Sources (``data.train`` / ``data.valid``), each resolved to a sorted list of utterances:

* a Kaldi ``feats.scp`` (``kaldiio.load_scp``; Kaldi matrices are frames x dims and are transposed);
* ``.npy`` feature files ``(n_mels, frames)``: a directory (searched recursively), a glob, a list, or a
  text file listing paths;
* audio files (wav/flac/...) with ``data.preset``: featurised once with
  :func:`sqcodec.audio.features.wave_to_features`, kept in memory or cached as ``.npy`` in the experiment
  directory (``data.cache: disk``; always used under DDP so that only rank 0 featurises).

``data.speed_perturb`` (e.g. ``[0.9, 1.0, 1.1]``, audio sources) adds a resampled copy of every training
utterance per factor != 1 (:func:`speed_perturbed`), after the validation hold-out.

Determinism: the training data form one infinite stream of positions ``p = 0, 1, 2, ...``; position ``p``
is utterance ``perm_e[p mod N]`` of epoch ``e = p // N``, where ``perm_e`` is a permutation drawn from a
generator seeded with ``(seed, e)``, and its crop offset comes from a generator seeded with
``(seed, e, p mod N)``. Step ``s`` uses positions ``[s·G, (s+1)·G)`` with ``G = batch_size · world_size``,
rank ``r`` the ``r``-th slice. So the batches of step ``s`` depend only on ``(seed, s, G)``: a resumed
run reproduces them without replaying the stream, and changing the number of GPUs at fixed G does not
change the data.
"""

from __future__ import annotations

import glob as globmod
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("sqcodec.train")

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".sph", ".opus", ".m4a")


class DataError(ValueError):
    """A data source that cannot be used (missing files, nothing left after filtering, bad stats)."""


# ------------------------------------------------------------------------------------------- sources
@dataclass
class Utterance:
    uid: str
    kind: str  # "scp" | "npy" | "audio"
    ref: str  # scp key / file path
    path: str  # the file holding it (the scp file for "scp")
    speaker: str | None = None
    speed: float = 1.0  # speed perturbation factor (audio sources; ``data.speed_perturb``)


def _expand_paths(spec: str | Path | Sequence[str]) -> list[Path]:
    """A directory, a glob, a text list of paths, a single file, or a list of any of these."""
    if isinstance(spec, (list, tuple)):
        out: list[Path] = []
        for s in spec:
            out += _expand_paths(s)
        return out
    s = os.path.expandvars(os.path.expanduser(str(spec)))
    if any(c in s for c in "*?["):
        return sorted(Path(p) for p in globmod.glob(s, recursive=True) if Path(p).is_file())
    p = Path(s)
    if p.is_dir():
        npys = sorted(p.rglob("*.npy"))
        if npys:
            return npys
        return sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_EXTS and q.is_file())
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.suffix.lower() in (".txt", ".lst", ".list"):
        base = p.parent
        lines = [ln.split()[-1] for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        return [Path(x) if Path(x).is_absolute() else base / x for x in lines]
    return [p]


def _uids_for(paths: list[Path]) -> list[str]:
    """Utterance ids: paths relative to their common directory, without suffix."""
    if not paths:
        return []
    if len(paths) == 1:
        return [paths[0].stem]
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    out = []
    for p in paths:
        rel = p.resolve().relative_to(common)
        out.append(str(rel.with_suffix("")).replace(os.sep, "/"))
    return out


def resolve_source(spec: Any, preset: str | None = None) -> list[Utterance]:
    """Turn a ``data.train`` / ``data.valid`` spec into utterances (sorted by id, ids unique)."""
    if spec is None:
        return []
    if isinstance(spec, dict):
        kinds = [k for k in ("scp", "npy", "audio") if spec.get(k) is not None]
        if len(kinds) != 1:
            raise DataError(f"a data source dict needs exactly one of scp/npy/audio, got {sorted(spec)}")
        kind = kinds[0]
        preset = spec.get("preset", preset)
        target = spec[kind]
    elif isinstance(spec, (list, tuple)) and spec and all(isinstance(s, dict) for s in spec):
        utts: list[Utterance] = []
        for s in spec:
            utts += resolve_source(s, preset)
        return _check_unique(utts)
    else:
        target = spec
        if isinstance(spec, (str, Path)) and str(spec).endswith(".scp"):
            kind = "scp"
        else:
            kind = "auto"

    if kind == "scp":
        scps = [target] if isinstance(target, (str, Path)) else list(target)
        utts = []
        for scp in scps:
            scp = Path(os.path.expandvars(os.path.expanduser(str(scp))))
            if not scp.is_file():
                raise DataError(f"{scp}: no such feats.scp")
            for line in scp.read_text().splitlines():
                if line.strip():
                    key = line.split(maxsplit=1)[0]
                    utts.append(Utterance(key, "scp", key, str(scp)))
        return _check_unique(sorted(utts, key=lambda u: u.uid))

    paths = _expand_paths(target)
    if not paths:
        raise DataError(f"data source {target!r} matched no files")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: no such file ({len(missing)} listed files missing)")
    if kind == "auto":
        kind = "npy" if all(p.suffix == ".npy" for p in paths) else "audio"
    if kind == "npy":
        bad = [p for p in paths if p.suffix != ".npy"]
        if bad:
            raise DataError(f"{bad[0]}: expected a .npy feature file")
    else:
        bad = [p for p in paths if p.suffix.lower() not in AUDIO_EXTS]
        if bad:
            raise DataError(f"{bad[0]}: not an audio file ({', '.join(AUDIO_EXTS)})")
        if not preset:
            raise DataError("audio data sources need a mel preset: set data.preset (e.g. vctk)")
    utts = [Utterance(uid, kind, str(p), str(p)) for uid, p in zip(_uids_for(paths), paths, strict=True)]
    if kind == "audio":
        for u in utts:
            u.kind = f"audio:{preset}"
    return _check_unique(sorted(utts, key=lambda u: u.uid))


def _check_unique(utts: list[Utterance]) -> list[Utterance]:
    seen: set[str] = set()
    for u in utts:
        if u.uid in seen:
            raise DataError(f"duplicate utterance id '{u.uid}' ({u.path})")
        seen.add(u.uid)
    return utts


# ------------------------------------------------------------------------------------------- speakers
def _read_utt2spk(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"{path}: no such utt2spk file")
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    return out


def assign_speakers(utts: list[Utterance], mode: str | None) -> None:
    """Fill ``Utterance.speaker`` according to ``data.speakers``."""
    if not mode:
        return
    tables: dict[str, dict[str, str]] = {}
    for u in utts:
        if mode == "parent_dir":
            if u.kind == "scp":
                raise DataError("data.speakers=parent_dir needs file sources; use utt2spk with feats.scp")
            u.speaker = Path(u.ref).parent.name
        elif mode == "prefix":
            u.speaker = Path(u.uid).name.split("_")[0]
        else:
            table_path = Path(u.path).parent / "utt2spk" if mode == "utt2spk" else Path(mode)
            key = str(table_path)
            if key not in tables:
                tables[key] = _read_utt2spk(table_path)
            table = tables[key]
            spk = table.get(u.uid, table.get(Path(u.uid).name))
            if spk is None:
                raise DataError(f"{table_path}: no speaker for utterance '{u.uid}'")
            u.speaker = spk


def build_speaker_map(
    train: list[Utterance], valid: list[Utterance], existing: dict[str, int] | None = None
) -> dict[str, int]:
    """Speaker name -> integer id (sorted names, training speakers first, then validation-only ones).

    ``existing`` (from a resumed run) is kept as is; a speaker it lacks is an error, since the model's
    embedding table was sized for it."""
    names_train = sorted({u.speaker for u in train if u.speaker is not None})
    names_valid = sorted({u.speaker for u in valid if u.speaker is not None} - set(names_train))
    if existing is not None:
        missing = [n for n in names_train + names_valid if n not in existing]
        if missing:
            raise DataError(f"speakers {missing[:5]} are not in the run's speakers.json")
        return dict(existing)
    if names_valid:
        log.warning("%d validation speakers never occur in training: %s", len(names_valid), names_valid[:5])
    return {n: i for i, n in enumerate(names_train + names_valid)}


# ------------------------------------------------------------------------------------------- loading
def speed_perturbed(path: str, sample_rate: int, factor: float) -> np.ndarray:
    """The audio of ``path`` at ``sample_rate``, played ``factor`` times faster: resampled from
    ``factor * sample_rate`` to ``sample_rate`` (soxr), so that it lasts ``1 / factor`` as long and every
    frequency is scaled by ``factor`` (``sox speed``; Ko et al. 2015, Kaldi's 3-way perturbation)."""
    from sqcodec.audio.io import load_mono, resample

    return resample(load_mono(path, sample_rate)[0], factor * sample_rate, sample_rate)


def with_speed_perturbation(utts: list[Utterance], factors: Sequence[float]) -> list[Utterance]:
    """One copy of every audio utterance per factor != 1 (uid ``sp<f>-<uid>``, same speaker)."""
    out = []
    for f in factors:
        if float(f) == 1.0:
            continue
        for u in utts:
            if not u.kind.startswith("audio:"):
                raise DataError(f"{u.path}: data.speed_perturb needs audio sources, not {u.kind} features")
            out.append(Utterance(f"sp{float(f):g}-{u.uid}", u.kind, u.ref, u.path, u.speaker, float(f)))
    return out


class FeatureStore:
    """Features ``(n_mels, frames)`` float32 of a list of utterances, read lazily or held in memory."""

    def __init__(
        self,
        utts: list[Utterance],
        *,
        in_memory: bool = True,
        cache_dir: Path | None = None,
        scp_frames_first: bool = True,
        may_write_cache: bool = True,
    ) -> None:
        self.utts = utts
        self.scp_frames_first = scp_frames_first
        self.cache_dir = cache_dir
        self.may_write_cache = may_write_cache
        self._scp: dict[str, Any] = {}
        self._mem: dict[int, np.ndarray] = {}
        self.in_memory = in_memory
        self.lengths = np.zeros(len(utts), dtype=np.int64)
        self.n_mels: int | None = None
        for i, _ in enumerate(utts):
            feat = self._read(i)
            if feat.ndim != 2:
                raise DataError(f"{utts[i].path}: features must be 2-D (n_mels, frames), got {feat.shape}")
            if self.n_mels is None:
                self.n_mels = int(feat.shape[0])
            elif feat.shape[0] != self.n_mels:
                raise DataError(
                    f"{utts[i].path}: {feat.shape[0]} feature dims, expected {self.n_mels} ('{utts[i].uid}')"
                )
            self.lengths[i] = feat.shape[1]
            if in_memory:
                self._mem[i] = np.ascontiguousarray(feat, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.utts)

    def _read(self, i: int) -> np.ndarray:
        u = self.utts[i]
        if u.kind == "scp":
            if u.path not in self._scp:
                import kaldiio

                self._scp[u.path] = kaldiio.load_scp(u.path)
            try:
                mat = np.asarray(self._scp[u.path][u.ref])
            except Exception as e:
                raise DataError(f"{u.path}: cannot read '{u.ref}' ({e})") from e
            return mat.T if self.scp_frames_first else mat
        if u.kind == "npy":
            try:
                return np.load(u.ref, mmap_mode=None if self.in_memory else "r", allow_pickle=False)
            except Exception as e:
                raise DataError(f"{u.ref}: cannot read features ({e})") from e
        if u.kind.startswith("audio:"):
            return self._featurise(u, u.kind.split(":", 1)[1])
        raise DataError(f"unknown source kind {u.kind}")

    def _featurise(self, u: Utterance, preset_name: str) -> np.ndarray:
        cache = None
        if self.cache_dir is not None:
            st = os.stat(u.ref)
            key = f"{Path(u.ref).resolve()}|{st.st_size}|{st.st_mtime_ns}|{preset_name}"
            if u.speed != 1.0:
                key += f"|speed{u.speed!r}"
            cache = self.cache_dir / preset_name / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"
            if cache.is_file():
                try:
                    return np.load(cache, allow_pickle=False)
                except Exception:  # a damaged cache entry is recomputed
                    pass
        from sqcodec.audio.features import PRESETS, wave_to_features

        if preset_name not in PRESETS:
            raise DataError(f"unknown mel preset '{preset_name}' (known: {', '.join(sorted(PRESETS))})")
        try:
            source: Any = (
                u.ref if u.speed == 1.0 else speed_perturbed(u.ref, PRESETS[preset_name].sample_rate, u.speed)
            )
            feat = np.asarray(wave_to_features(source, preset_name), dtype=np.float32)
        except Exception as e:
            raise DataError(f"{u.ref}: feature extraction failed ({e})") from e
        if cache is not None and self.may_write_cache:
            from .checkpoint import atomic_write

            atomic_write(cache, lambda f: np.save(f, feat, allow_pickle=False))
        return feat

    def get(self, i: int) -> np.ndarray:
        if i in self._mem:
            return self._mem[i]
        return np.asarray(self._read(i), dtype=np.float32)


# ------------------------------------------------------------------------------------------- stats
@dataclass
class Stats:
    mean: np.ndarray
    std: np.ndarray

    def apply(self, feat: np.ndarray) -> np.ndarray:
        return ((feat - self.mean[:, None]) / self.std[:, None]).astype(np.float32)

    @classmethod
    def from_feature_stats(cls, fs: Any) -> Stats:
        return cls(np.asarray(fs.mean, np.float32), np.asarray(fs.std, np.float32))


def load_stats(path: str | Path) -> Stats:
    """Per-dimension stats: an :mod:`sqcodec.audio.stats` file (.json / .npz), or a foreign ``.npz``
    (mean/std, mean/scale or count/sum/sum_square) or ``.npy`` of shape (2, D) (mean, std)."""
    path = Path(os.path.expandvars(os.path.expanduser(str(path))))
    if not path.is_file():
        raise DataError(f"{path}: no such stats file")
    from sqcodec.audio.stats import FeatureStats

    try:
        return Stats.from_feature_stats(FeatureStats.load(path))
    except ValueError:
        pass
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            mean, std = arr[0], arr[1]
        else:
            z = np.load(path, allow_pickle=False)
            keys = set(z.files)
            if {"mean", "std"} <= keys:
                mean, std = z["mean"], z["std"]
            elif {"mean", "scale"} <= keys:
                mean, std = z["mean"], z["scale"]
            elif {"count", "sum", "sum_square"} <= keys:
                n = float(np.asarray(z["count"]).sum())
                mean = z["sum"] / n
                std = np.sqrt(np.maximum(z["sum_square"] / n - mean**2, 0.0))
            else:
                raise DataError(f"{path}: stats need mean/std, mean/scale or count/sum/sum_square")
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot read stats ({e})") from e
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    std = np.where(std < 1e-8, 1.0, std)
    return Stats(mean.astype(np.float32), std.astype(np.float32))


def compute_stats(store: Any, save_to: Path | None = None, preset: str | None = None) -> Stats:
    """Per-dimension mean and population std over all frames of ``store`` (streaming, float64), saved
    with :class:`sqcodec.audio.stats.FeatureStats` when ``save_to`` is given."""
    from sqcodec.audio.stats import FeatureStats

    fs = FeatureStats(preset=preset)
    for i in range(len(store)):
        fs.update(store.get(i))
    if fs.count == 0:
        raise DataError("cannot compute stats: no frames")
    if save_to is not None:
        fs.save(save_to)
    return Stats.from_feature_stats(fs)


# ------------------------------------------------------------------------------------------- training
def _collate(
    feats: list[np.ndarray], lengths: list[int], speakers: list[int] | None, channel_axis: bool, pad: bool
) -> dict[str, torch.Tensor]:
    t = max(f.shape[1] for f in feats)
    x = np.zeros((len(feats), feats[0].shape[0], t), np.float32)
    mask = np.zeros((len(feats), t), bool)
    for b, (f, n) in enumerate(zip(feats, lengths, strict=True)):
        x[b, :, : f.shape[1]] = f
        mask[b, :n] = True
    xt = torch.from_numpy(x)
    batch = {"x": xt.unsqueeze(1) if channel_axis else xt}
    if pad:
        batch["mask"] = torch.from_numpy(mask)
    if speakers is not None:
        batch["speaker"] = torch.tensor(speakers, dtype=torch.long)
    return batch


@dataclass
class TrainStream:
    """Deterministic, resumable stream of training batches (see the module docstring)."""

    store: FeatureStore
    index: np.ndarray  # store indices usable for training
    crop: int  # crop_frames + crop_pad
    seed: int
    batch_size: int
    rank: int = 0
    world_size: int = 1
    pad_short: bool = False
    channel_axis: bool = False
    speaker_ids: list[int] | None = None
    stats: Stats | None = None
    _perm_cache: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            if len(self._perm_cache) > 4:
                self._perm_cache.clear()
            rng = np.random.default_rng([self.seed, epoch])
            self._perm_cache[epoch] = rng.permutation(len(self.index))
        return self._perm_cache[epoch]

    def item(self, position: int) -> tuple[np.ndarray, int, int]:
        """(crop (n_mels, <= crop), valid frames, store index) of stream position ``position``."""
        n = len(self.index)
        epoch, k = divmod(position, n)
        i = int(self.index[self.permutation(epoch)[k]])
        feat = self.store.get(i)
        t = feat.shape[1]
        if t >= self.crop:
            off = int(np.random.default_rng([self.seed, epoch, k]).integers(0, t - self.crop + 1))
            piece = feat[:, off : off + self.crop]
        else:
            piece = feat
        if self.stats is not None:
            piece = self.stats.apply(piece)
        return np.asarray(piece, np.float32), min(t, self.crop), i

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """This rank's batch of optimisation step ``step`` (0-based)."""
        start = step * self.global_batch + self.rank * self.batch_size
        feats, lengths, spk = [], [], []
        for p in range(start, start + self.batch_size):
            f, n, i = self.item(p)
            if f.shape[1] < self.crop:
                f = np.pad(f, ((0, 0), (0, self.crop - f.shape[1])))
            feats.append(f)
            lengths.append(n)
            if self.speaker_ids is not None:
                spk.append(self.speaker_ids[i])
        return _collate(
            feats, lengths, spk if self.speaker_ids is not None else None, self.channel_axis, self.pad_short
        )


# ------------------------------------------------------------------------------------------- validation
@dataclass
class ValidSet:
    """Deterministic validation batches: whole utterances (trimmed) or one centre crop per utterance."""

    batches: list[dict[str, torch.Tensor]]
    uids: list[str]

    def __len__(self) -> int:
        return len(self.uids)


def build_valid(
    store: FeatureStore,
    index: np.ndarray,
    *,
    mode: str,
    crop: int,
    crop_pad: int,
    multiple: int,
    batch_size: int,
    pad_short: bool,
    channel_axis: bool,
    speaker_ids: list[int] | None,
    stats: Stats | None,
) -> ValidSet:
    items = []
    for i in index:
        i = int(i)
        feat = store.get(i)
        t = feat.shape[1]
        if mode == "full":
            keep = crop_pad + ((t - crop_pad) // multiple) * multiple
            if keep - crop_pad < multiple:
                continue
            piece, n = feat[:, :keep], keep
        else:
            if t >= crop:
                off = (t - crop) // 2
                piece, n = feat[:, off : off + crop], crop
            elif pad_short:
                piece, n = feat, t
            else:
                continue
        if stats is not None:
            piece = stats.apply(piece)
        items.append((np.asarray(piece, np.float32), n, i))
    if mode == "full" and batch_size > 1:
        items.sort(key=lambda it: (it[1], store.utts[it[2]].uid))
    batches = []
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        lengths = [n for _, n, _ in chunk]
        padded = [
            np.pad(f, ((0, 0), (0, (crop if mode == "crop" else max(lengths)) - f.shape[1])))
            for f, _, _ in chunk
        ]
        need_mask = pad_short or len(set(lengths)) > 1 or (mode == "crop" and min(lengths) < crop)
        spk = [speaker_ids[i] for _, _, i in chunk] if speaker_ids is not None else None
        batches.append(_collate(padded, lengths, spk, channel_axis, need_mask))
    return ValidSet(batches, [store.utts[i].uid for _, _, i in items])


# ------------------------------------------------------------------------------------------- assembly
@dataclass
class DataBundle:
    train: TrainStream
    valid: ValidSet | None
    speaker_map: dict[str, int] | None
    stats: Stats | None
    n_mels: int
    train_uids: list[str]
    dropped: int

    @property
    def n_speakers(self) -> int:
        return len(self.speaker_map) if self.speaker_map else 0


def _holdout(utts: list[Utterance], amount: float | int, seed: int) -> tuple[list[int], list[int]]:
    n = len(utts)
    k = int(round(amount * n)) if isinstance(amount, float) and 0 < amount < 1 else int(amount)
    if k <= 0:
        return list(range(n)), []
    if k >= n:
        raise DataError(f"data.valid_holdout={amount} leaves no training utterances (of {n})")
    order = np.random.default_rng([seed, 7919]).permutation(n)
    valid = sorted(int(i) for i in order[:k])
    chosen = set(valid)
    return [i for i in range(n) if i not in chosen], valid


def build_data(
    cfg: dict,
    *,
    seed: int,
    batch_size: int,
    exp_dir: Path,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
    with_valid: bool = True,
    reuse_saved: bool = False,
) -> DataBundle:
    """Build the training stream and the validation set from the ``data`` config section
    (``data.kind: image`` is handed to :func:`sqcodec.data.images.build_image_data`).

    Writes (rank 0) ``speakers.json``, ``stats.json`` (for ``stats: auto``), ``train_list.txt`` and
    ``valid_list.txt`` into ``exp_dir``. With ``reuse_saved`` (a resumed run) an existing ``speakers.json``
    / ``stats.json`` is read back instead, so that ids and normalisation stay fixed for the run.
    """
    d = cfg
    exp_dir = Path(exp_dir)
    if d.get("kind") == "image":
        from sqcodec.data.images import build_image_data

        return build_image_data(
            d,
            seed=seed,
            batch_size=batch_size,
            exp_dir=exp_dir,
            rank=rank,
            world_size=world_size,
            with_valid=with_valid,
        )
    barrier = barrier or (lambda: None)
    is_main = rank == 0
    train_utts = resolve_source(d["train"], d["preset"])
    if not train_utts:
        raise DataError("no training data: set data.train (feats.scp, .npy files or audio + data.preset)")
    valid_utts = resolve_source(d["valid"], d["preset"]) if d["valid"] is not None else []
    assign_speakers(train_utts, d["speakers"])
    assign_speakers(valid_utts, d["speakers"])

    frames_first = bool(d["scp_frames_first"])
    cache_dir = None
    needs_audio = any(u.kind.startswith("audio") for u in train_utts + valid_utts)
    if needs_audio and (d["cache"] == "disk" or world_size > 1):
        cache_dir = Path(d["cache_dir"]) if d["cache_dir"] else exp_dir / "feats_cache"

    def make_store(utts: list[Utterance]) -> FeatureStore:
        if cache_dir is not None and world_size > 1:
            if is_main:  # featurise once, on rank 0
                FeatureStore(utts, in_memory=False, cache_dir=cache_dir, scp_frames_first=frames_first)
            barrier()
        return FeatureStore(
            utts,
            in_memory=bool(d["in_memory"]),
            cache_dir=cache_dir,
            scp_frames_first=frames_first,
            may_write_cache=is_main or world_size == 1,
        )

    if valid_utts:
        base = train_utts + valid_utts
        train_idx = list(range(len(train_utts)))
        valid_idx = list(range(len(train_utts), len(base)))
    else:
        base = train_utts
        train_idx, valid_idx = _holdout(train_utts, d["valid_holdout"], seed)
    # speed-perturbed copies of the training utterances only (after the hold-out: validation stays clean)
    perturbed = with_speed_perturbation([base[i] for i in train_idx], d.get("speed_perturb") or [])
    store = make_store(base + perturbed)
    train_idx += range(len(base), len(base) + len(perturbed))
    if not with_valid:
        valid_idx = []

    min_frames = int(d["min_frames"])
    crop = int(d["crop_frames"]) + int(d["crop_pad"])
    usable = [i for i in train_idx if store.lengths[i] >= max(min_frames, 1)]
    if d["short"] == "drop":
        usable = [i for i in usable if store.lengths[i] >= crop]
    dropped = len(train_idx) - len(usable)
    if not usable:
        raise DataError(
            f"no training utterance has >= {crop} frames (crop_frames + crop_pad); "
            "lower data.crop_frames or set data.short=pad"
        )
    valid_idx = [i for i in valid_idx if store.lengths[i] >= max(min_frames, 1)]
    if d["valid_max"]:
        valid_idx = valid_idx[: int(d["valid_max"])]

    # speakers
    speaker_map = None
    speaker_ids = None
    if d["speakers"]:
        spk_file = exp_dir / "speakers.json"
        existing = json.loads(spk_file.read_text()) if reuse_saved and spk_file.is_file() else None
        speaker_map = build_speaker_map(
            [store.utts[i] for i in usable], [store.utts[i] for i in valid_idx], existing
        )
        speaker_ids = [speaker_map.get(u.speaker, -1) if u.speaker is not None else -1 for u in store.utts]
        if is_main and existing is None:
            from .checkpoint import atomic_write_text

            atomic_write_text(spk_file, json.dumps(speaker_map, indent=1, sort_keys=True) + "\n")

    # standardisation
    stats = None
    if d["stats"] == "auto":
        stats_file = exp_dir / "stats.json"
        if reuse_saved and stats_file.is_file():
            stats = load_stats(stats_file)
        else:
            stats = compute_stats(_SubStore(store, usable), stats_file if is_main else None, d["preset"])
    elif d["stats"]:
        stats = load_stats(d["stats"])
    if stats is not None and stats.mean.shape[0] != store.n_mels:
        raise DataError(f"stats have {stats.mean.shape[0]} dims, features have {store.n_mels}")

    if is_main:
        from .checkpoint import atomic_write_text

        atomic_write_text(exp_dir / "train_list.txt", "".join(f"{store.utts[i].uid}\n" for i in usable))
        atomic_write_text(exp_dir / "valid_list.txt", "".join(f"{store.utts[i].uid}\n" for i in valid_idx))

    stream = TrainStream(
        store=store,
        index=np.asarray(usable, dtype=np.int64),
        crop=crop,
        seed=seed,
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        pad_short=d["short"] == "pad",
        channel_axis=bool(d["channel_axis"]),
        speaker_ids=speaker_ids,
        stats=stats,
    )
    valid = None
    if valid_idx:
        valid = build_valid(
            store,
            np.asarray(valid_idx),
            mode=d["valid_mode"],
            crop=crop,
            crop_pad=int(d["crop_pad"]),
            multiple=int(d["valid_multiple"]),
            batch_size=int(d["valid_batch_size"]),
            pad_short=d["short"] == "pad",
            channel_axis=bool(d["channel_axis"]),
            speaker_ids=speaker_ids,
            stats=stats,
        )
        if len(valid) == 0:
            log.warning("no validation utterance is long enough; validation disabled")
            valid = None
    return DataBundle(
        train=stream,
        valid=valid,
        speaker_map=speaker_map,
        stats=stats,
        n_mels=int(store.n_mels or 0),
        train_uids=[store.utts[i].uid for i in usable],
        dropped=dropped,
    )


class _SubStore:
    """A view of some utterances of a store (for statistics over the training part only)."""

    def __init__(self, store: FeatureStore, index: list[int]) -> None:
        self.store, self.index, self.n_mels = store, index, store.n_mels

    def __len__(self) -> int:
        return len(self.index)

    def get(self, i: int) -> np.ndarray:
        return self.store.get(self.index[i])
