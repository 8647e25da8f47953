"""Python entry points of the Kaldi/ESPnet-style recipes (``recipes/codec.sh``, ``egs/*/run.sh``).

``python -m sqcodec.recipe_tools <subcommand> --help``. Subcommands:

=================== ================================================================================
prep-vctk           VCTK 0.80 (``wav48/pXXX/*.wav`` + ``txt/``) or 0.92 (``wav48_silence_trimmed/pXXX/
                    *_mic1.flac``) -> ``data/{train,test}`` (SQ-VAE App. E.2.1: 90 % / 10 % of the
                    utterances, a random per-utterance split with a fixed seed)
prep-zerospeech     ZeroSpeech 2019 ``english/`` -> ``data/{train,test,abx}`` (train/voice + train/unit;
                    train/parallel/voice; test/)
prep-urbansound     UrbanSound8K -> ``data/{train,valid,test}`` (folds 1-8 / 9 / 10, HQ-VAE App. E)
prep-audio-dir      LibriSpeech ``{train-clean-5,dev-clean-2}/SPK/CH/*.flac`` or any folder of audio ->
                    ``data/{train,dev}``
validate-data-dir   check a Kaldi data dir (sorted, unique, consistent keys, spk2utt = inverse utt2spk)
split-scp           split a Kaldi table into N contiguous parts
extract-feats       wav.scp (+ segments) -> Kaldi ark/scp of (frames, n_mels) float32 log-mels
compute-stats       feats.scp -> per-bin mean/std JSON (:class:`sqcodec.audio.stats.FeatureStats`)
normalize           feats.scp + stats -> standardised ark/scp
conf-get            print one (dotted) key of a YAML config (used by the shell scripts)
wav-list            wav.scp -> a list file of plain audio paths (the vocoder trainer's ``--train``)
decode              stage 5: encode/decode/vocode a set with a trained model (:mod:`sqcodec.recipe_eval`)
score-decode        stage 6: score the decode folders of sets, ``scores/<set>_<name>.{json,md}`` + summary
=================== ================================================================================

Kaldi conventions: tables are ``key value`` lines sorted by key in C (byte) order; utterance ids start
with their speaker id so that ``utt2spk`` and ``spk2utt`` sort consistently; feature matrices in arks are
``(frames, dims)`` (the trainer's ``data.scp_frames_first`` transposes them back to ``(n_mels, frames)``).
Every file is written to a temporary name and renamed, so a failed run leaves no half-written table.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import random
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".sph", ".aiff", ".aif", ".mp3", ".opus")


class RecipeError(RuntimeError):
    """A one-line, user-facing error (bad corpus layout, inconsistent data dir, ...)."""


# ----------------------------------------------------------------------------------------- tables
def c_sorted(keys: Iterable[str]) -> list[str]:
    """Sort as ``LC_ALL=C sort`` does (byte order)."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it; on any error nothing is left and
    the error is a :class:`RecipeError` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _output_error(path, err) from None


def _output_error(path: Path, err: OSError) -> RecipeError:
    """A write to ``path`` (or its temporary file) failed: one line naming ``path``."""
    return RecipeError(f"{path}: cannot write ({err.strerror or err})")


@contextlib.contextmanager
def _writing_table(out_prefix: Path):
    """Guard for writing ``<out_prefix>.ark`` + ``.scp``: the previous ``.scp`` (and ``.utt2num_frames``)
    go first, so an interrupted run never leaves a table pointing into a half-rewritten ark; on an error
    the ark and the temporary scp are removed and a write error names the ark."""
    ark, scp = _with_ext(out_prefix, ".ark"), _with_ext(out_prefix, ".scp")
    tmp_scp = scp.with_name(f".{scp.name}.tmp")
    try:
        out_prefix.parent.mkdir(parents=True, exist_ok=True)
        for stale in (scp, _with_ext(out_prefix, ".utt2num_frames")):
            stale.unlink(missing_ok=True)
    except OSError as err:
        raise _output_error(ark, err) from None
    try:
        yield ark, scp, tmp_scp
    except BaseException as err:
        for f in (ark, tmp_scp, scp, _with_ext(out_prefix, ".utt2num_frames")):  # all of this run's
            with contextlib.suppress(OSError):
                f.unlink()
        if isinstance(err, OSError) and (
            err.filename is None or str(err.filename) in (str(ark), str(tmp_scp))
        ):
            raise _output_error(ark, err) from None
        raise


def write_table(path: Path, table: dict[str, str]) -> None:
    """``key value`` lines, C-sorted by key."""
    write_text_atomic(path, "".join(f"{k} {table[k]}\n" for k in c_sorted(table)))


def read_table(path: Path) -> list[tuple[str, str]]:
    """``key rest-of-line`` pairs in file order (blank lines skipped)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) < 2:
            raise RecipeError(f"{path}:{n}: expected 'key value', got {line!r}")
        out.append((parts[0], parts[1]))
    return out


def spk2utt_from(utt2spk: dict[str, str]) -> dict[str, str]:
    inv: dict[str, list[str]] = {}
    for utt in c_sorted(utt2spk):
        inv.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in inv.items()}


def write_data_dir(
    out: Path,
    wavs: dict[str, Path],
    utt2spk: dict[str, str],
    text: dict[str, str] | None = None,
    extra: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write ``wav.scp``, ``utt2spk``, ``spk2utt`` (+ ``text`` and other ``extra`` tables) into ``out``."""
    if not wavs:
        raise RecipeError(f"{out}: no utterances for this set")
    if set(wavs) != set(utt2spk):
        raise RecipeError(f"{out}: wav.scp and utt2spk keys differ")
    for utt, spk in utt2spk.items():
        if not utt.startswith(spk):
            raise RecipeError(f"{out}: utterance id {utt!r} does not start with its speaker id {spk!r}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("text", "segments", "feats.scp"):
        (out / stale).unlink(missing_ok=True)
    write_table(out / "wav.scp", {u: str(Path(p).resolve()) for u, p in wavs.items()})
    write_table(out / "utt2spk", utt2spk)
    write_table(out / "spk2utt", spk2utt_from(utt2spk))
    if text:
        write_table(out / "text", {u: text[u] for u in wavs if u in text})
    for name, table in (extra or {}).items():
        write_table(out / name, table)


def validate_data_dir(d: Path, check_files: bool = True) -> list[str]:
    """Problems found in a Kaldi data dir (empty list: valid)."""
    d = Path(d)
    problems: list[str] = []
    tables: dict[str, list[tuple[str, str]]] = {}
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        if not (d / name).is_file():
            problems.append(f"{d}/{name}: missing")
    if problems:
        return problems
    for name in ("wav.scp", "utt2spk", "spk2utt", "text", "segments", "utt2category"):
        if (d / name).is_file():
            try:
                tables[name] = read_table(d / name)
            except RecipeError as e:
                problems.append(str(e))
                continue
            keys = [k for k, _ in tables[name]]
            if keys != c_sorted(keys):
                problems.append(f"{d}/{name}: not sorted (LC_ALL=C sort -k1,1)")
            if len(set(keys)) != len(keys):
                problems.append(f"{d}/{name}: duplicate keys")
    if problems:
        return problems
    utt2spk = dict(tables["utt2spk"])
    utts = set(utt2spk)
    if "segments" in tables:
        seg = dict(tables["segments"])
        if set(seg) != utts:
            problems.append(f"{d}/segments: keys differ from utt2spk")
        recs = {v.split()[0] for v in seg.values()}
        if not recs <= set(dict(tables["wav.scp"])):
            problems.append(f"{d}/segments: recording ids missing from wav.scp")
    elif set(dict(tables["wav.scp"])) != utts:
        problems.append(f"{d}/wav.scp: keys differ from utt2spk")
    for name in ("text", "utt2category"):
        if name in tables and set(dict(tables[name])) - utts:
            problems.append(f"{d}/{name}: keys not in utt2spk")
    spk2utt = {k: v.split() for k, v in tables["spk2utt"]}
    if spk2utt_from(utt2spk) != {k: " ".join(v) for k, v in spk2utt.items()}:
        problems.append(f"{d}/spk2utt: not the inverse of utt2spk (utils/utt2spk_to_spk2utt.sh)")
    if check_files:
        for utt, p in tables["wav.scp"]:
            if not p.endswith("|") and not Path(p).is_file():
                problems.append(f"{d}/wav.scp: {utt}: no such file {p}")
                break
    return problems


# ----------------------------------------------------------------------------------------- splits
def random_split(keys: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(kept, held_out): ``round(fraction * N)`` keys (at least 1 when N >= 2) drawn with ``seed`` from
    the C-sorted keys, so the split depends only on the key set and the seed."""
    keys = c_sorted(keys)
    n_out = int(round(fraction * len(keys)))
    if len(keys) >= 2:
        n_out = min(max(n_out, 1), len(keys) - 1)
    rng = random.Random(seed)
    held = set(rng.sample(keys, n_out))
    return [k for k in keys if k not in held], [k for k in keys if k in held]


def _audio_files(root: Path, exts: Sequence[str] = AUDIO_EXTS) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())


# ----------------------------------------------------------------------------------------- corpora
VCTK_092 = re.compile(r"^(p\d+|s\d+)_(\d+)_mic([12])$")
VCTK_080 = re.compile(r"^(p\d+|s\d+)_(\d+)$")


def find_vctk(db_root: Path) -> tuple[str, Path]:
    """Locate the wav folder of VCTK 0.80 (``wav48``) or 0.92 (``wav48_silence_trimmed``) under db_root."""
    for cand in (db_root, db_root / "VCTK-Corpus", db_root / "VCTK-Corpus-0.92"):
        if (cand / "wav48_silence_trimmed").is_dir():
            return "0.92", cand
        if (cand / "wav48").is_dir():
            return "0.80", cand
    raise RecipeError(
        f"{db_root}: no VCTK wav48/ (0.80) or wav48_silence_trimmed/ (0.92) folder found "
        "(give --db_root the folder that holds it)"
    )


def prep_vctk(db_root: Path, datadir: Path, test_fraction: float = 0.1, seed: int = 777, mic: str = "mic1"):
    version, root = find_vctk(db_root)
    wavs: dict[str, Path] = {}
    if version == "0.92":
        for p in sorted((root / "wav48_silence_trimmed").glob("*/*.flac")):
            m = VCTK_092.match(p.stem)
            if m and f"mic{m.group(3)}" == mic:
                wavs[f"{m.group(1)}_{m.group(2)}"] = p
    else:
        for p in sorted((root / "wav48").glob("*/*.wav")):
            if VCTK_080.match(p.stem):
                wavs[p.stem] = p
    if not wavs:
        raise RecipeError(f"{root}: VCTK {version} layout found but no utterances in it")
    text = {}
    for utt in wavs:
        spk = utt.split("_")[0]
        t = root / "txt" / spk / f"{utt}.txt"
        if t.is_file():
            text[utt] = " ".join(t.read_text(encoding="utf-8", errors="replace").split())
    train, test = random_split(list(wavs), test_fraction, seed)
    for name, keys in (("train", train), ("test", test)):
        write_data_dir(
            datadir / name,
            {k: wavs[k] for k in keys},
            {k: k.split("_")[0] for k in keys},
            {k: text[k] for k in keys if k in text},
        )
    return {"version": version, "train": len(train), "test": len(test)}


def _zs_set(files: list[Path]) -> tuple[dict[str, Path], dict[str, str]]:
    wavs: dict[str, Path] = {}
    for p in files:
        if p.stem in wavs:
            raise RecipeError(f"{p}: duplicate utterance id {p.stem!r} (also {wavs[p.stem]})")
        if "_" not in p.stem:
            raise RecipeError(f"{p}: expected a SPEAKER_ID file name (e.g. S015_0361841101.wav)")
        wavs[p.stem] = p
    return wavs, {u: u.split("_")[0] for u in wavs}


def prep_zerospeech(db_root: Path, datadir: Path):
    root = None
    for cand in (db_root, db_root / "english", db_root / "2019" / "english"):
        if (cand / "train" / "voice").is_dir():
            root = cand
            break
    if root is None:
        raise RecipeError(f"{db_root}: no ZeroSpeech 2019 english/train/voice folder found")
    sets = {
        "train": sorted((root / "train" / "voice").glob("*.wav"))
        + sorted((root / "train" / "unit").glob("*.wav")),
        "test": sorted((root / "train" / "parallel" / "voice").glob("*.wav")),
        "abx": sorted((root / "test").glob("*.wav")),
    }
    counts = {}
    for name, files in sets.items():
        if not files:
            if name == "train":
                raise RecipeError(f"{root}/train: no .wav files in voice/ or unit/")
            print(f"warning: {root}: no files for set '{name}'; data/{name} not written", file=sys.stderr)
            continue
        wavs, u2s = _zs_set(files)
        write_data_dir(datadir / name, wavs, u2s)
        counts[name] = len(wavs)
    return counts


US8K_SPLIT = {**{f: "train" for f in range(1, 9)}, 9: "valid", 10: "test"}


def prep_urbansound(db_root: Path, datadir: Path, allow_missing: bool = False):
    root = db_root / "UrbanSound8K" if (db_root / "UrbanSound8K").is_dir() else db_root
    meta = root / "metadata" / "UrbanSound8K.csv"
    if not meta.is_file():
        raise RecipeError(f"{meta}: no such file (give --db_root the UrbanSound8K folder or its parent)")
    sets: dict[str, dict[str, Path]] = {"train": {}, "valid": {}, "test": {}}
    spk: dict[str, str] = {}
    cat: dict[str, str] = {}
    missing = []
    with open(meta, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            name, fold = row["slice_file_name"], int(row["fold"])
            p = root / "audio" / f"fold{fold}" / name
            if not p.is_file():
                missing.append(p)
                continue
            utt = Path(name).stem
            sets[US8K_SPLIT[fold]][utt] = p
            spk[utt] = row["fsID"]
            cat[utt] = row.get("class") or row.get("class_name") or row.get("classID", "")
    if missing and not allow_missing:
        raise RecipeError(f"{missing[0]}: listed in {meta} but missing ({len(missing)} files missing)")
    for name, wavs in sets.items():
        write_data_dir(
            datadir / name,
            wavs,
            {u: spk[u] for u in wavs},
            extra={"utt2category": {u: cat[u] for u in wavs}},
        )
    return {k: len(v) for k, v in sets.items()} | {"missing": len(missing)}


def _librispeech_set(folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    wavs: dict[str, Path] = {}
    u2s: dict[str, str] = {}
    for p in _audio_files(folder):
        spk = p.stem.split("-")[0]
        wavs[p.stem] = p
        u2s[p.stem] = spk
    return wavs, u2s


def prep_audio_dir(
    db_root: Path,
    datadir: Path,
    train_sets: Sequence[str] = ("train-clean-5",),
    dev_sets: Sequence[str] = ("dev-clean-2",),
    dev_fraction: float = 0.1,
    seed: int = 777,
):
    """LibriSpeech subsets when present under db_root (or db_root/LibriSpeech), else any audio folder:
    speaker = the first folder level below db_root (or ``spk`` for flat folders), split 90/10 by seed."""
    root = db_root / "LibriSpeech" if (db_root / "LibriSpeech").is_dir() else db_root
    if any((root / s).is_dir() for s in train_sets):
        out = {}
        for name, subsets in (("train", train_sets), ("dev", dev_sets)):
            wavs: dict[str, Path] = {}
            u2s: dict[str, str] = {}
            for s in subsets:
                if (root / s).is_dir():
                    w, u = _librispeech_set(root / s)
                    wavs |= w
                    u2s |= u
            if wavs:
                write_data_dir(datadir / name, wavs, u2s)
            out[name] = len(wavs)
        if not out.get("train"):
            raise RecipeError(f"{root}: no audio in {', '.join(train_sets)}")
        return out
    files = _audio_files(root)
    if not files:
        raise RecipeError(f"{root}: no audio files ({', '.join(AUDIO_EXTS)})")
    wavs, u2s = {}, {}
    for p in files:
        rel = p.relative_to(root)
        spk = re.sub(r"[^A-Za-z0-9.-]", "-", rel.parts[0]) if len(rel.parts) > 1 else "spk"
        tail = re.sub(
            r"[^A-Za-z0-9._-]", "-", "_".join(rel.with_suffix("").parts[1:] or rel.with_suffix("").parts)
        )
        utt = tail if tail.startswith(spk) else f"{spk}_{tail}"
        if utt in wavs:
            raise RecipeError(f"{p}: duplicate utterance id {utt!r} (also {wavs[utt]})")
        wavs[utt], u2s[utt] = p, spk
    train, dev = random_split(list(wavs), dev_fraction, seed)
    write_data_dir(datadir / "train", {k: wavs[k] for k in train}, {k: u2s[k] for k in train})
    if dev:
        write_data_dir(datadir / "dev", {k: wavs[k] for k in dev}, {k: u2s[k] for k in dev})
    return {"train": len(train), "dev": len(dev)}


# ----------------------------------------------------------------------------------------- scp tools
def split_scp(src: Path, outs: Sequence[Path]) -> None:
    """Contiguous, near-equal parts (the first ``N mod n`` parts get one extra line), like split_scp.pl."""
    lines = [ln for ln in Path(src).read_text(encoding="utf-8").splitlines() if ln.strip()]
    n = len(outs)
    if n < 1:
        raise RecipeError("split-scp: need at least one output")
    if len(lines) < n:
        raise RecipeError(f"{src}: {len(lines)} lines cannot be split into {n} non-empty parts (lower --nj)")
    base, extra = divmod(len(lines), n)
    start = 0
    for i, out in enumerate(outs):
        size = base + (1 if i < extra else 0)
        write_text_atomic(Path(out), "".join(f"{ln}\n" for ln in lines[start : start + size]))
        start += size


def _with_ext(prefix: Path, ext: str) -> Path:
    """``feats.1`` + ``.ark`` -> ``feats.1.ark`` (not ``Path.with_suffix``, which would drop ``.1``)."""
    return prefix.with_name(prefix.name + ext)


def extract_feats(
    wav_scp: Path, preset: str, out_prefix: Path, segments: Path | None = None, compress: bool = False
) -> int:
    """Featurise every utterance of ``wav_scp`` (or of ``segments``) into ``<out_prefix>.ark/.scp``."""
    import kaldiio
    import numpy as np

    from sqcodec.audio import get_preset, load_mono, wave_to_features

    p = get_preset(preset)
    out_prefix = Path(out_prefix).absolute()  # the scp names the ark by absolute path
    wavs = dict(read_table(wav_scp))
    if segments is not None:
        items = []
        for utt, rest in read_table(segments):
            rec, start, end = rest.split()[:3]
            if rec not in wavs:
                raise RecipeError(f"{segments}: recording {rec!r} of {utt!r} is not in {wav_scp}")
            items.append((utt, wavs[rec], float(start), float(end)))
    else:
        items = [(u, path, None, None) for u, path in wavs.items()]
    frames = {}
    cache: dict[str, np.ndarray] = {}
    with _writing_table(out_prefix) as (ark, scp, tmp_scp):
        with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
            for utt, path, start, end in items:
                if path.endswith("|"):
                    raise RecipeError(f"{wav_scp}: {utt}: pipe entries are not supported; list audio files")
                if start is None:
                    feat = wave_to_features(path, p)
                else:
                    if path not in cache:
                        cache.clear()
                        cache[path] = load_mono(path, p.sample_rate)[0]
                    wave = cache[path]
                    a = int(round(start * p.sample_rate))
                    b = len(wave) if float(end) < 0 else int(round(end * p.sample_rate))
                    feat = wave_to_features(wave[a:b], p, sample_rate=p.sample_rate)
                mat = np.ascontiguousarray(feat.T, dtype=np.float32)  # Kaldi: (frames, dims)
                writer(utt, mat)
                frames[utt] = str(mat.shape[0])
        os.replace(tmp_scp, scp)
        write_table(_with_ext(out_prefix, ".utt2num_frames"), frames)
    return len(items)


def _load_scp(scp: Path):
    import kaldiio

    return kaldiio.load_scp(str(scp))


def compute_stats(scp: Path, out: Path, preset: str | None = None) -> dict:
    from sqcodec.audio import FeatureStats

    st = FeatureStats(preset=preset)
    for _, mat in _load_scp(scp).items():
        st.update(mat.T)  # (frames, dims) -> (dims, frames)
    if st.count == 0:
        raise RecipeError(f"{scp}: no frames")
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        st.save(out)
    except OSError as err:
        raise _output_error(out, err) from None
    return {"utterances": st.num_utterances, "frames": st.count}


def normalize(scp: Path, stats: Path, out_prefix: Path) -> int:
    import kaldiio
    import numpy as np

    from sqcodec.audio import FeatureStats

    st = FeatureStats.load(stats)
    out_prefix = Path(out_prefix).absolute()
    if Path(scp).absolute() == _with_ext(out_prefix, ".scp"):
        raise RecipeError(f"{scp}: normalize would overwrite its input (give another --out)")
    mean, std = st.mean, st.std
    n = 0
    with _writing_table(out_prefix) as (ark, out_scp, tmp_scp):
        with kaldiio.WriteHelper(f"ark,scp:{ark},{tmp_scp}") as writer:
            for utt, mat in _load_scp(scp).items():
                writer(utt, ((np.asarray(mat, np.float64) - mean) / std).astype(np.float32))
                n += 1
        os.replace(tmp_scp, out_scp)
    return n


def conf_get(conf: Path, key: str, default: str | None = None) -> str:
    import yaml  # plain safe loading (no torch import: the shell calls this often)

    try:
        node = yaml.safe_load(Path(conf).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise RecipeError(f"{conf}: cannot read YAML config ({e})") from None
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not None:
                return default
            raise RecipeError(f"{conf}: no key {key!r}")
        node = node[part]
    return "" if node is None else str(node)


def _plain_entries(wav_scp: Path, needs: str) -> list[tuple[str, str]]:
    """``(utt, path)`` of ``wav_scp`` in file order; entries must be plain paths of existing files (``needs``
    names what needs that, for the error): a piped ``cmd |`` entry or a path with white space is a
    :class:`RecipeError`."""
    entries: list[tuple[str, str]] = []
    for utt, value in read_table(wav_scp):
        value = value.strip()
        if value.endswith("|"):
            raise RecipeError(
                f"{wav_scp}: {utt}: piped entry '{value}' is not supported here; {needs} plain audio file "
                "paths in wav.scp"
            )
        if any(c.isspace() for c in value):
            raise RecipeError(f"{wav_scp}: {utt}: audio path '{value}' contains white space")
        if not Path(value).is_file():
            raise RecipeError(f"{wav_scp}: {utt}: no such file {value}")
        entries.append((utt, value))
    if not entries:
        raise RecipeError(f"{wav_scp}: no entries")
    return entries


def wav_list(wav_scp: Path, out: Path, max_files: int = 0) -> int:
    """Write the audio paths of ``wav_scp`` (file order, each path once; the first ``max_files`` when > 0)
    to ``out``, one per line (plain paths only, see :func:`_plain_entries`)."""
    paths = list(dict.fromkeys(p for _, p in _plain_entries(wav_scp, "the vocoder trainer needs")))
    if max_files > 0:
        paths = paths[:max_files]
    write_text_atomic(Path(out), "".join(f"{x}\n" for x in paths))
    return len(paths)


def abx_audio(wav_scp: Path, out: Path) -> int:
    """Stage 7: a folder of ``<utt><ext>`` symbolic links to the audio of ``wav_scp``, so that the ``#file``
    ids of an ABX item file (the utterance ids) are found by ``sqcodec abx --audio``. The folder is rebuilt
    from scratch (links only; anything else in it is an error, never deleted)."""
    entries = _plain_entries(wav_scp, "sqcodec abx --audio needs")
    out = Path(out)
    if out.exists():
        stray = [p.name for p in out.iterdir() if not p.is_symlink()]
        if stray:
            raise RecipeError(f"{out}: holds files that are not links ({stray[0]}, ...); not touching it")
        for p in out.iterdir():
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for utt, path in entries:
        if "/" in utt:
            raise RecipeError(f"{wav_scp}: {utt}: an utterance id with '/' cannot name a file")
        (out / f"{utt}{Path(path).suffix}").symlink_to(Path(path).resolve())
    return len(entries)


# ----------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m sqcodec.recipe_tools", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("prep-vctk", help="VCTK 0.80/0.92 -> data/{train,test}")
    s.add_argument("--db_root", type=Path, required=True)
    s.add_argument("--datadir", type=Path, default=Path("data"))
    s.add_argument("--test_fraction", type=float, default=0.1)
    s.add_argument("--seed", type=int, default=777)
    s.add_argument("--mic", default="mic1", choices=["mic1", "mic2"], help="VCTK 0.92 microphone")

    s = sub.add_parser("prep-zerospeech", help="ZeroSpeech 2019 english -> data/{train,test,abx}")
    s.add_argument("--db_root", type=Path, required=True)
    s.add_argument("--datadir", type=Path, default=Path("data"))

    s = sub.add_parser("prep-urbansound", help="UrbanSound8K -> data/{train,valid,test} (folds 1-8/9/10)")
    s.add_argument("--db_root", type=Path, required=True)
    s.add_argument("--datadir", type=Path, default=Path("data"))
    s.add_argument("--allow_missing", action="store_true", help="skip CSV rows whose file is missing")

    s = sub.add_parser("prep-audio-dir", help="LibriSpeech subsets or any audio folder -> data/{train,dev}")
    s.add_argument("--db_root", type=Path, required=True)
    s.add_argument("--datadir", type=Path, default=Path("data"))
    s.add_argument("--train_sets", default="train-clean-5")
    s.add_argument("--dev_sets", default="dev-clean-2")
    s.add_argument("--dev_fraction", type=float, default=0.1)
    s.add_argument("--seed", type=int, default=777)

    s = sub.add_parser("validate-data-dir", help="check a Kaldi data dir")
    s.add_argument("datadir", type=Path)
    s.add_argument("--no_check_files", action="store_true")

    s = sub.add_parser("split-scp", help="split a table into contiguous parts: IN OUT1 .. OUTn")
    s.add_argument("src", type=Path)
    s.add_argument("outs", type=Path, nargs="+")

    s = sub.add_parser("extract-feats", help="wav.scp -> <out>.ark/.scp of (frames, n_mels) log-mels")
    s.add_argument("--wav_scp", type=Path, required=True)
    s.add_argument("--segments", type=Path, default=None)
    s.add_argument("--preset", required=True)
    s.add_argument("--out", type=Path, required=True, help="output prefix: writes OUT.ark, OUT.scp")

    s = sub.add_parser("compute-stats", help="feats.scp -> stats.json")
    s.add_argument("--scp", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--preset", default=None)

    s = sub.add_parser("normalize", help="feats.scp + stats -> standardised <out>.ark/.scp")
    s.add_argument("--scp", type=Path, required=True)
    s.add_argument("--stats", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)

    s = sub.add_parser("conf-get", help="print a dotted key of a YAML config")
    s.add_argument("conf", type=Path)
    s.add_argument("key")
    s.add_argument("--default", default=None)

    s = sub.add_parser("wav-list", help="wav.scp -> list file of plain audio paths (vocoder training)")
    s.add_argument("--wav_scp", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--max", type=int, default=0, help="keep only the first N paths (0 = all)")

    s = sub.add_parser("abx-audio", help="stage 7: wav.scp -> folder of <utt>.<ext> links for sqcodec abx")
    s.add_argument("--wav_scp", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)

    s = sub.add_parser("decode", help="stage 5: decode a set (codes, features, vocoded wavs)")
    s.add_argument("--exp", type=Path, required=True, help="the model's experiment folder exp/<tag>")
    s.add_argument("--set", required=True, help="set name (output folders exp/<tag>/decode_<set>_*)")
    s.add_argument("--scp", type=Path, required=True, help="the model's input features (this job's part)")
    s.add_argument("--raw_scp", type=Path, required=True, help="raw features of the set (resynthesis)")
    s.add_argument("--data", type=Path, required=True, help="Kaldi data dir of the set (reference audio)")
    s.add_argument("--preset", required=True)
    s.add_argument("--vocoder", required=True, help="vocoder folder or griffinlim")
    s.add_argument("--layers", default="", help="layer counts, e.g. '1 2 4 8' ('' = 1, 2, 4, .. L)")
    s.add_argument("--feat_stats", type=Path, default=None, help="stats --scp is standardised with")
    s.add_argument("--utt2spk", type=Path, default=None)
    s.add_argument("--ckpt", default="", help="checkpoint (default: best.pt, else the newest)")
    s.add_argument("--job", type=int, default=None, help="job id: write feats.JOB.scp etc.")
    s.add_argument("--device", default="cpu", help="cpu | cuda | auto")

    s = sub.add_parser("score-decode", help="stage 6: score decode folders -> scores/*.json, summary.md")
    s.add_argument("--exp", type=Path, required=True)
    s.add_argument("--sets", required=True, help="space-separated set names")
    s.add_argument("--ref_scps", required=True, help="ground-truth raw feats.scp per set, space separated")
    s.add_argument("--preset", required=True)
    s.add_argument("--stats", type=Path, default=None, help="train stats (adds log_mel_rmse_norm)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument(
        "--metrics", default="", help="waveform metrics (default log_mel_rmse,mel_mse_db2,stoi,pesq_wb)"
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        if a.cmd == "prep-vctk":
            res = prep_vctk(a.db_root, a.datadir, a.test_fraction, a.seed, a.mic)
        elif a.cmd == "prep-zerospeech":
            res = prep_zerospeech(a.db_root, a.datadir)
        elif a.cmd == "prep-urbansound":
            res = prep_urbansound(a.db_root, a.datadir, a.allow_missing)
        elif a.cmd == "prep-audio-dir":
            res = prep_audio_dir(
                a.db_root, a.datadir, a.train_sets.split(","), a.dev_sets.split(","), a.dev_fraction, a.seed
            )
        elif a.cmd == "validate-data-dir":
            problems = validate_data_dir(a.datadir, not a.no_check_files)
            if problems:
                for p in problems:
                    print(f"error: {p}", file=sys.stderr)
                return 1
            res = f"{a.datadir}: OK"
        elif a.cmd == "split-scp":
            split_scp(a.src, a.outs)
            return 0
        elif a.cmd == "extract-feats":
            res = f"{extract_feats(a.wav_scp, a.preset, a.out, a.segments)} utterances -> {a.out}.scp"
        elif a.cmd == "compute-stats":
            res = compute_stats(a.scp, a.out, a.preset)
        elif a.cmd == "normalize":
            res = f"{normalize(a.scp, a.stats, a.out)} utterances -> {a.out}.scp"
        elif a.cmd == "conf-get":
            print(conf_get(a.conf, a.key, a.default))
            return 0
        elif a.cmd == "wav-list":
            res = f"{wav_list(a.wav_scp, a.out, a.max)} audio files -> {a.out}"
        elif a.cmd == "abx-audio":
            res = f"{abx_audio(a.wav_scp, a.out)} audio links -> {a.out}"
        elif a.cmd == "decode":
            from .recipe_eval import decode_set

            res = decode_set(
                a.exp,
                a.set,
                a.scp,
                a.raw_scp,
                a.data,
                a.preset,
                a.vocoder,
                a.layers,
                a.feat_stats,
                a.utt2spk,
                a.ckpt or None,
                a.job,
                a.device,
            )
        elif a.cmd == "score-decode":
            from .recipe_eval import score_sets

            sets, scps = a.sets.split(), a.ref_scps.split()
            if len(sets) != len(scps):
                raise RecipeError("score-decode: --sets and --ref_scps need one entry each per set")
            paths = score_sets(
                a.exp,
                sets,
                a.preset,
                dict(zip(sets, map(Path, scps), strict=True)),
                a.out,
                a.stats,
                a.metrics or None,
            )
            res = f"{len(paths)} files -> {a.out}"
        else:  # pragma: no cover
            raise AssertionError(a.cmd)
    except (RecipeError, ValueError, OSError, KeyError) as e:
        if isinstance(e, OSError) and e.filename is not None:
            e = f"{e.filename}: {e.strerror or e}"  # "path: problem", not "[Errno N] problem: 'path'"
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return 1
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
