"""``sqcodec mushra analyze``: post-screening and statistics of MUSHRA ratings (ITU-R BS.1534-3).

Input: result CSVs with webMUSHRA's columns (``session_test_id, <participant fields>, session_uuid,
trial_id, rating_stimulus, rating_score, rating_time, rating_comment``), written by ``sqcodec mushra
serve`` or by webMUSHRA's ``service/write.php``; comma or semicolon separated. An assessor is one
``session_uuid``, or, in older webMUSHRA CSVs without it, one combination of the participant fields
(or the column given as ``assessor_column``).

Post-screening (the BS.1534-3 rule): an assessor is excluded when they rate the hidden reference below 90
in more than 15 % of the trials they rated it in, or (when the 7 kHz mid anchor is present) rate the mid
anchor above 90 in more than 15 % of the trials.

Statistics per condition over the kept assessors: count, median and quartiles, mean and a 95 %
confidence interval from Student's t over **all individual ratings** (mean ± t(0.975, n-1)·s/√n, as
BS.1534-3 does), and, as a more conservative second view, the mean of the per-assessor means with its
own t interval over the assessors (k-1 degrees of freedom).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import HIDDEN_REFERENCE, MushraError, write_text_atomic

__all__ = [
    "Rating",
    "analyze",
    "read_ratings",
    "screen",
    "summarize",
    "to_markdown",
    "violin_plot",
    "write_outputs",
]

REQUIRED = ("trial_id", "rating_stimulus", "rating_score")


@dataclass(frozen=True)
class Rating:
    assessor: str
    test_id: str
    trial: str
    stimulus: str
    score: float


def _sniff(path: Path, head: str) -> str:
    first = head.splitlines()[0] if head else ""
    return ";" if first.count(";") > first.count(",") else ","


def read_ratings(
    paths: list[str | os.PathLike], assessor_column: str | None = None
) -> tuple[list[Rating], list[str]]:
    """Read result CSVs: the ratings (a repeated assessor/trial/stimulus keeps its last score) and notes."""
    ratings: OrderedDict[tuple[str, str, str], Rating] = OrderedDict()
    notes: list[str] = []
    if not paths:
        raise MushraError("give at least one result CSV")
    for p in paths:
        path = Path(p)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise MushraError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise MushraError(f"{path}: cannot read ({exc})") from None
        reader = csv.reader(io.StringIO(text), delimiter=_sniff(path, text))
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise MushraError(f"{path}: empty file")
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise MushraError(f"{path}: not a MUSHRA result CSV (no column {missing[0]!r})")
        col = {name: i for i, name in enumerate(header)}
        if assessor_column is not None:
            if assessor_column not in col:
                raise MushraError(f"{path}: no column {assessor_column!r} (--assessor-column)")
            id_cols = [assessor_column]
        elif "session_uuid" in col:
            id_cols = ["session_uuid"]
        else:
            start = col["session_test_id"] + 1 if "session_test_id" in col else 0
            id_cols = header[start : col["trial_id"]]
            if not id_cols:
                raise MushraError(
                    f"{path}: no session_uuid or participant columns to tell assessors apart "
                    "(name one with --assessor-column)"
                )
        duplicates = 0
        for line, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < len(header):
                raise MushraError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
            who = " / ".join(row[col[c]].strip() for c in id_cols)
            if not who.strip(" /"):
                raise MushraError(f"{path}:{line}: empty assessor id ({', '.join(id_cols)})")
            raw = row[col["rating_score"]].strip()
            try:
                score = float(raw)
            except ValueError:
                score = math.nan
            if not math.isfinite(score) or not 0 <= score <= 100:
                raise MushraError(f"{path}:{line}: rating_score {raw!r} is not a number in 0-100")
            test_id = row[col["session_test_id"]].strip() if "session_test_id" in col else ""
            r = Rating(who, test_id, row[col["trial_id"]].strip(), row[col["rating_stimulus"]].strip(), score)
            key = (r.assessor, r.trial, r.stimulus)
            if key in ratings:
                duplicates += 1
                del ratings[key]
            ratings[key] = r
        if duplicates:
            notes.append(
                f"{path}: {duplicates} repeated ratings (same assessor, trial and stimulus); kept the last"
            )
    if not ratings:
        raise MushraError(f"{paths[0]}: no ratings")
    return list(ratings.values()), notes


def screen(
    ratings: list[Rating],
    reference: str = HIDDEN_REFERENCE,
    mid_anchor: str | None = "anchor70",
    threshold: float = 90.0,
    max_fraction: float = 0.15,
) -> list[dict[str, Any]]:
    """Per assessor: trials, hidden-reference ratings below ``threshold`` (and mid-anchor ratings above
    it), and whether BS.1534-3 post-screening excludes them (``excluded`` plus a ``reason``)."""
    if not any(r.stimulus == reference for r in ratings):
        raise MushraError(
            f"no ratings of the hidden reference {reference!r}: name it with --reference-name, "
            "or skip post-screening with --no-screening"
        )
    out = []
    for who in dict.fromkeys(r.assessor for r in ratings):
        mine = [r for r in ratings if r.assessor == who]
        ref = [r.score for r in mine if r.stimulus == reference]
        anchor = [r.score for r in mine if mid_anchor and r.stimulus == mid_anchor]
        low = sum(s < threshold for s in ref)
        high = sum(s > threshold for s in anchor)
        row: dict[str, Any] = {
            "assessor": who,
            "trials": len({r.trial for r in mine}),
            "reference_ratings": len(ref),
            "reference_below_threshold": low,
            "reference_fraction": low / len(ref) if ref else None,
            "mid_anchor_ratings": len(anchor),
            "mid_anchor_above_threshold": high,
            "mid_anchor_fraction": high / len(anchor) if anchor else None,
            "excluded": False,
            "reason": "",
        }
        if not ref:
            row["reason"] = "never rated the hidden reference (kept, not screened)"
        elif low / len(ref) > max_fraction:
            row["excluded"] = True
            row["reason"] = (
                f"rated the hidden reference below {threshold:g} in {low} of {len(ref)} trials "
                f"({100 * low / len(ref):.0f}% > {100 * max_fraction:.0f}%)"
            )
        elif anchor and high / len(anchor) > max_fraction:
            row["excluded"] = True
            row["reason"] = (
                f"rated the mid anchor {mid_anchor} above {threshold:g} in {high} of {len(anchor)} trials "
                f"({100 * high / len(anchor):.0f}% > {100 * max_fraction:.0f}%)"
            )
        out.append(row)
    return out


def _t_half_width(x: np.ndarray) -> float:
    from scipy import stats

    if x.size < 2:
        return math.nan
    return float(stats.t.ppf(0.975, x.size - 1) * np.std(x, ddof=1) / math.sqrt(x.size))


def _order(conditions: list[str], reference: str) -> list[str]:
    anchors = [c for c in conditions if c.startswith("anchor")]
    rest = [c for c in conditions if c != reference and c not in anchors]
    return ([reference] if reference in conditions else []) + rest + anchors


def summarize(ratings: list[Rating], reference: str = HIDDEN_REFERENCE) -> list[dict[str, Any]]:
    """Statistics per condition (see the module docstring), hidden reference first and anchors last."""
    rows = []
    for cond in _order(list(dict.fromkeys(r.stimulus for r in ratings)), reference):
        mine = [r for r in ratings if r.stimulus == cond]
        x = np.array([r.score for r in mine], dtype=np.float64)
        per: dict[str, list[float]] = {}
        for r in mine:
            per.setdefault(r.assessor, []).append(r.score)
        means = np.array([np.mean(v) for v in per.values()], dtype=np.float64)
        mean, half = float(np.mean(x)), _t_half_width(x)
        amean, ahalf = float(np.mean(means)), _t_half_width(means)
        rows.append(
            {
                "condition": cond,
                "n": int(x.size),
                "assessors": len(per),
                "median": float(np.median(x)),
                "q1": float(np.percentile(x, 25)),
                "q3": float(np.percentile(x, 75)),
                "mean": mean,
                "std": float(np.std(x, ddof=1)) if x.size > 1 else math.nan,
                "ci95": half,
                "ci95_low": mean - half,
                "ci95_high": mean + half,
                "assessor_mean": amean,
                "assessor_ci95": ahalf,
            }
        )
    return rows


def analyze(
    paths: list[str | os.PathLike],
    reference: str = HIDDEN_REFERENCE,
    mid_anchor: str | None = "anchor70",
    screening: bool = True,
    assessor_column: str | None = None,
) -> dict[str, Any]:
    """Read, screen and summarise: the report that :func:`write_outputs` saves."""
    ratings, notes = read_ratings(paths, assessor_column)
    assessors = (
        screen(ratings, reference, mid_anchor)
        if screening
        else [
            {
                "assessor": a,
                "trials": len({r.trial for r in ratings if r.assessor == a}),
                "excluded": False,
                "reason": "not screened",
            }
            for a in dict.fromkeys(r.assessor for r in ratings)
        ]
    )
    excluded = {a["assessor"] for a in assessors if a["excluded"]}
    kept = [r for r in ratings if r.assessor not in excluded]
    if not kept:
        raise MushraError(
            f"{paths[0]}: all {len(assessors)} assessors fail post-screening; "
            "see the raw ratings with --no-screening"
        )
    return {
        "files": [str(p) for p in paths],
        "test_ids": sorted({r.test_id for r in ratings if r.test_id}),
        "screening": {
            "enabled": screening,
            "rule": "ITU-R BS.1534-3 post-screening: exclude an assessor who rates the hidden reference "
            "below 90 in more than 15% of the trials, or the mid anchor above 90 in more than 15% of "
            "the trials",
            "hidden_reference": reference,
            "mid_anchor": mid_anchor,
            "threshold": 90.0,
            "max_fraction": 0.15,
        },
        "ci_method": "95% CI: Student's t over all individual ratings (ci95), and over the per-assessor "
        "means (assessor_ci95)",
        "assessors_total": len(assessors),
        "assessors_kept": len(assessors) - len(excluded),
        "excluded_assessors": [a["assessor"] for a in assessors if a["excluded"]],
        "assessors": assessors,
        "conditions": summarize(kept, reference),
        "notes": notes,
    }


def _f(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The per-condition table plus the list of excluded assessors."""
    lines = [
        "| condition | ratings | assessors | median | IQR | mean | 95% CI (ratings) | mean of assessor means "
        "| 95% CI (assessors) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report["conditions"]:
        lines.append(
            f"| {c['condition']} | {c['n']} | {c['assessors']} | {_f(c['median'])} | "
            f"{_f(c['q1'])}-{_f(c['q3'])} | {_f(c['mean'])} | ±{_f(c['ci95'])} | {_f(c['assessor_mean'])} | "
            f"±{_f(c['assessor_ci95'])} |"
        )
    lines.append("")
    lines.append(f"Assessors: {report['assessors_kept']} kept of {report['assessors_total']}.")
    ex = [a for a in report["assessors"] if a["excluded"]]
    if ex:
        lines.append("Excluded by post-screening (BS.1534-3):")
        lines.extend(f"- {a['assessor']}: {a['reason']}" for a in ex)
    elif report["screening"]["enabled"]:
        lines.append("No assessor excluded by post-screening (BS.1534-3).")
    else:
        lines.append("Post-screening was switched off.")
    return "\n".join(lines) + "\n"


def violin_plot(report: dict[str, Any], ratings: dict[str, list[float]]) -> bytes:
    """PNG bytes: one violin per condition (like HQ-VAE Fig. 11), white dot at the median, thick bar
    from the first to the third quartile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = [c["condition"] for c in report["conditions"]]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(conds) + 1.5), 4.0), dpi=120)
    try:
        pos = [i + 1 for i, c in enumerate(conds) if np.ptp(ratings[c]) > 0]
        if pos:
            parts = ax.violinplot(
                [ratings[conds[i - 1]] for i in pos], positions=pos, showextrema=False, widths=0.8
            )
            for body in parts["bodies"]:
                body.set_facecolor("#7aa6d6")
                body.set_edgecolor("#2b5d8f")
                body.set_alpha(0.8)
        for i, c in enumerate(report["conditions"], start=1):
            ax.vlines(i, c["q1"], c["q3"], color="#222", linewidth=5)
            ax.scatter([i], [c["median"]], s=28, color="white", edgecolor="#222", zorder=3)
        ax.set_xticks(range(1, len(conds) + 1))
        ax.set_xticklabels(
            conds, rotation=20 if len(conds) > 5 else 0, ha="right" if len(conds) > 5 else "center"
        )
        ax.set_ylim(-3, 103)
        ax.set_ylabel("Rating score")
        title = ", ".join(report["test_ids"]) or "MUSHRA"
        ax.set_title(f"{title} ({report['assessors_kept']} assessors)")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def write_outputs(
    report: dict[str, Any], out_dir: str | os.PathLike, assessor_column: str | None = None
) -> list[Path]:
    """Write ``mushra_analysis.json``, ``mushra_analysis.md`` and ``mushra_violin.png`` to ``out_dir``
    (each atomically; the plot is drawn before anything is written)."""
    out = Path(out_dir)
    ratings, _ = read_ratings(report["files"], assessor_column)
    excluded = set(report["excluded_assessors"])
    by_cond: dict[str, list[float]] = {}
    for r in ratings:
        if r.assessor not in excluded:
            by_cond.setdefault(r.stimulus, []).append(r.score)
    png = violin_plot(report, by_cond)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "mushra_analysis.json", out / "mushra_analysis.md", out / "mushra_violin.png"]
    write_text_atomic(paths[0], json.dumps(_jsonable(report), indent=1) + "\n")
    write_text_atomic(paths[1], to_markdown(report))
    write_text_atomic(paths[2], png)
    return paths
