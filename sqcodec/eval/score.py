"""Scoring reference/degraded pairs: one pair (:func:`score`), two folders matched by name
(:func:`score_dirs`), ``.codes`` statistics (:func:`codes_report`), and JSON / markdown output.

Waveform metrics (PESQ, STOI, mel distance) run on the reference's own rate (the degraded file is
resampled to it with soxr when it differs); mel metrics run on the preset's features (both files resampled
to the preset rate). Pairs of different lengths are cropped to the shorter, and each row reports how many
samples that dropped (``cropped_samples``, at the reference rate).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import AudioError, atomic_write, get_preset, load_mono, resample, wave_to_features
from . import metrics as M

__all__ = [
    "ALL_METRICS",
    "AUDIO_EXTENSIONS",
    "DEFAULT_METRICS",
    "codes_report",
    "match_dirs",
    "parse_metrics",
    "score",
    "score_dirs",
    "to_markdown",
    "write_json",
    "write_markdown",
]

#: Every metric :func:`score` knows, in table order. ``log_mel_rmse_norm`` needs train stats.
ALL_METRICS = (
    "mel_mse_db2",
    "log_mel_rmse",
    "log_mel_rmse_norm",
    "mel_distance",
    "mcd",
    "pesq_wb",
    "pesq_nb",
    "stoi",
    "estoi",
)
DEFAULT_METRICS = tuple(m for m in ALL_METRICS if m != "log_mel_rmse_norm")
_MEL_METRICS = {"mel_mse_db2", "log_mel_rmse", "log_mel_rmse_norm", "mcd"}
#: Direction of each metric, for the markdown header.
HIGHER_IS_BETTER = {"pesq_wb", "pesq_nb", "stoi", "estoi"}

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus", ".oga")


def parse_metrics(spec: str | Sequence[str] | None, have_stats: bool = False) -> list[str]:
    """``"pesq_wb,stoi"`` or a list -> validated metric names (``None``/``"all"``: the defaults, plus
    ``log_mel_rmse_norm`` when stats are given). ``pesq`` means both PESQ modes."""
    if spec is None or spec == "all" or spec == ["all"]:
        names = list(DEFAULT_METRICS) + (["log_mel_rmse_norm"] if have_stats else [])
        return [m for m in ALL_METRICS if m in names]
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower().replace("-", "_")
        if not name:
            continue
        expanded = {"pesq": ["pesq_wb", "pesq_nb"], "mel_mse": ["mel_mse_db2"], "rmse": ["log_mel_rmse"]}.get(
            name, [name]
        )
        for n in expanded:
            if n not in ALL_METRICS:
                raise ValueError(f"unknown metric {raw.strip()!r}; known: {', '.join(ALL_METRICS)}")
            if n == "log_mel_rmse_norm" and not have_stats:
                raise ValueError("log_mel_rmse_norm needs train statistics (--stats)")
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("no metrics selected")
    return out


def _load(source: Any, sample_rate: int | None, name: str) -> tuple[np.ndarray, int, str]:
    if isinstance(source, (str, os.PathLike)):
        wave, info = load_mono(source)
        return wave.astype(np.float64), info.sample_rate, str(source)
    if sample_rate is None:
        raise ValueError(f"{name}: an array needs its sample_rate")
    arr = np.asarray(source, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr.mean(axis=0)
    if arr.ndim != 1 or arr.size == 0:
        raise AudioError(f"<{name}>", f"want a non-empty (samples,) array, got shape {np.shape(source)}")
    if not np.isfinite(arr).all():
        raise AudioError(f"<{name}>", "NaN/inf sample values")
    return arr, int(sample_rate), f"<{name}>"


def score(
    ref: Any,
    deg: Any,
    preset: str = "codec16k",
    metrics: str | Sequence[str] | None = None,
    sample_rate: int | None = None,
    stats: Any = None,
    trim_edges: bool = False,
    mcd_dtw: bool = False,
) -> dict[str, Any]:
    """Score one pair: paths, or arrays at ``sample_rate``. Returns a row dict with each metric's value
    (float; NaN where PESQ found no utterance), ``sample_rate``, ``duration_s`` and ``cropped_samples``.

    ``stats``: train statistics (:class:`sqcodec.audio.FeatureStats`) for ``log_mel_rmse_norm``.
    ``trim_edges``: mel MSE on ``mel[:, 1:-1]`` (sony/sqvae). ``mcd_dtw``: align MCD frames by DTW.
    Bad audio raises :class:`sqcodec.audio.AudioError` naming the file.
    """
    names = parse_metrics(metrics, have_stats=stats is not None)
    p = get_preset(preset)
    ref_w, sr, ref_name = _load(ref, sample_rate, "ref")
    deg_w, deg_sr, deg_name = _load(deg, sample_rate, "deg")
    if deg_sr != sr:
        deg_w = resample(deg_w, deg_sr, sr).astype(np.float64)
    ref_w, deg_w, dropped = M.crop_pair(ref_w, deg_w)
    row: dict[str, Any] = {
        "ref": ref_name,
        "deg": deg_name,
        "sample_rate": sr,
        "duration_s": ref_w.size / sr,
        "cropped_samples": dropped,
    }
    if dropped:
        row["note"] = f"lengths differ by {dropped} samples at {sr} Hz; scored the first {ref_w.size}"
    if any(n in _MEL_METRICS for n in names):
        try:
            fr = wave_to_features(ref_w.astype(np.float32), p, sample_rate=sr)
        except AudioError as exc:
            raise AudioError(ref_name, exc.problem) from None
        try:
            fd = wave_to_features(deg_w.astype(np.float32), p, sample_rate=sr)
        except AudioError as exc:
            raise AudioError(deg_name, exc.problem) from None
    for n in names:
        if n == "mel_mse_db2":
            v = M.mel_mse_db(fr, fd, p, trim_edges=trim_edges)
        elif n == "log_mel_rmse":
            v = M.log_mel_rmse(fr, fd, p)
        elif n == "log_mel_rmse_norm":
            v = M.log_mel_rmse(fr, fd, p, stats=stats)
        elif n == "mcd":
            v = M.mcd(fr, fd, p, dtw=mcd_dtw)
        elif n == "mel_distance":
            v = M.mel_distance(ref_w, deg_w, sr)
        elif n in ("pesq_wb", "pesq_nb"):
            v = M.pesq_score(ref_w, deg_w, sr, mode=n[-2:])
        else:  # stoi / estoi
            v = M.stoi_score(ref_w, deg_w, sr, extended=n == "estoi")
        row[n] = v
    return row


def _audio_files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            key = path.relative_to(root).with_suffix("").as_posix()
            if key in found:
                raise AudioError(
                    path, f"same name as {found[key]} (files are matched by name without extension)"
                )
            found[key] = path
    return found


def match_dirs(ref_dir: str | os.PathLike, deg_dir: str | os.PathLike) -> dict[str, Any]:
    """Pair audio files of two folders by relative path without extension (``a/b.wav`` ~ ``a/b.flac``).

    Returns ``{"pairs": [(key, ref_path, deg_path), ...], "unmatched_ref": [...], "unmatched_deg": [...]}``
    (keys sorted).
    """
    ref_dir, deg_dir = Path(ref_dir), Path(deg_dir)
    for d in (ref_dir, deg_dir):
        if not d.is_dir():
            raise AudioError(d, "not a folder")
    refs, degs = _audio_files(ref_dir), _audio_files(deg_dir)
    return {
        "pairs": [(k, refs[k], degs[k]) for k in sorted(refs.keys() & degs.keys())],
        "unmatched_ref": sorted(str(refs[k]) for k in refs.keys() - degs.keys()),
        "unmatched_deg": sorted(str(degs[k]) for k in degs.keys() - refs.keys()),
    }


def _means(rows: list[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in names:
        vals = np.array([r[n] for r in rows if n in r], dtype=np.float64)
        ok = vals[np.isfinite(vals)]
        out[n] = float(ok.mean()) if ok.size else float("nan")
    return out


def score_dirs(
    ref_dir: str | os.PathLike,
    deg_dir: str | os.PathLike,
    preset: str = "codec16k",
    metrics: str | Sequence[str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score every matched pair of two folders (:func:`match_dirs`); ``kwargs`` go to :func:`score`.

    Returns the report: ``preset``, ``metrics``, ``rows`` (one per pair, with ``key``), ``means`` (over the
    rows, NaN values skipped), ``count``, ``unmatched_ref``, ``unmatched_deg``.
    """
    names = parse_metrics(metrics, have_stats=kwargs.get("stats") is not None)
    m = match_dirs(ref_dir, deg_dir)
    if not m["pairs"]:
        raise AudioError(deg_dir, f"no audio file matches one in {ref_dir} by name")
    rows = []
    for key, r, d in m["pairs"]:
        row = {"key": key, **score(r, d, preset, names, **kwargs)}
        rows.append(row)
    return report(rows, names, preset, m["unmatched_ref"], m["unmatched_deg"])


def report(
    rows: list[dict[str, Any]],
    names: Sequence[str],
    preset: str,
    unmatched_ref: Sequence[str] = (),
    unmatched_deg: Sequence[str] = (),
) -> dict[str, Any]:
    """Bundle rows into the report dict written by :func:`write_json` / :func:`to_markdown`."""
    return {
        "preset": preset,
        "metrics": list(names),
        "count": len(rows),
        "rows": rows,
        "means": _means(rows, names),
        "unmatched_ref": list(unmatched_ref),
        "unmatched_deg": list(unmatched_deg),
    }


def codes_report(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """Perplexity per layer over all ``.codes`` files, and their bitrates (per file and mean)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no .codes files given")
    rates = [{"file": str(p), **M.bits_per_second(p)} for p in paths]
    return {
        "files": len(paths),
        "perplexity": M.codebook_perplexity(paths),
        "bits_per_second": rates,
        "mean_nominal_bps": float(np.mean([r["nominal"] for r in rates])),
        "mean_actual_bps": float(np.mean([r["actual"] for r in rates])),
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a report atomically as JSON (NaN -> null); creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(result), indent=1) + "\n")
    return path


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "nan"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def to_markdown(result: dict[str, Any]) -> str:
    """Markdown table: one row per file (``key``, or the degraded path) and a final row of means."""
    names = result["metrics"]
    head = [f"{n} {'↑' if n in HIGHER_IS_BETTER else '↓'}" for n in names]
    lines = ["| file | " + " | ".join(head) + " |", "|---|" + "---:|" * len(names)]
    for r in result["rows"]:
        label = r.get("key") or Path(r["deg"]).name
        lines.append(f"| {label} | " + " | ".join(_fmt(r.get(n)) for n in names) + " |")
    lines.append(
        f"| **mean ({result['count']})** | " + " | ".join(_fmt(result["means"].get(n)) for n in names) + " |"
    )
    text = "\n".join(lines) + "\n"
    notes = []
    if result.get("unmatched_ref"):
        notes.append(f"unmatched reference files: {len(result['unmatched_ref'])}")
    if result.get("unmatched_deg"):
        notes.append(f"unmatched degraded files: {len(result['unmatched_deg'])}")
    cropped = [r for r in result["rows"] if r.get("cropped_samples")]
    if cropped:
        notes.append(f"{len(cropped)} pair(s) of different lengths cropped to the shorter")
    codes = result.get("codes")
    if codes:
        ppl = ", ".join(_fmt(v) for v in codes["perplexity"])
        notes.append(
            f"codes: {codes['files']} file(s), perplexity per layer [{ppl}], "
            f"{_fmt(codes['mean_nominal_bps'])} bps nominal, {_fmt(codes['mean_actual_bps'])} bps actual"
        )
    if result.get("preset"):
        notes.append(f"mel preset: {result['preset']}")
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def write_markdown(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write :func:`to_markdown` atomically; creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(to_markdown(result))
    return path
