"""Cross-check sqcodec's ABX (sqcodec.eval.abx) against zerospeech-libriabx 1.0.5 on real recordings.

Both implementations score the SAME feature files (.npy, float32, 10 ms frames) on the SAME item file and
this script prints both error rates and their difference for every (features, distance, mode).

The item file (written to --out, not a phonetic test set): there are no ZeroSpeech alignments offline,
so labels are made known by construction from real VCTK recordings (../shared/data/realaudio,
speech/vctk16k): speakers p225, p226, p227 and the prompt numbers all three recorded (003, 008, 011, 016,
019, 021, 022, 023, 024; VCTK speakers read the same numbered elicitation/rainbow-passage prompts, and the
durations agree, but the transcripts are not shipped here and were not checked). For each recording the
speech region is found by an energy threshold (10 ms frames whose RMS is within 35 dB of the loudest),
cut into 4 equal windows (the "context", written as prev = next = w0..w3), and each window into 2 equal
halves (two items). Item label ("phone") = the prompt number. So A and X share prompt and window position,
B is another prompt at the same position; within speaker, A and X are the two halves of one window of one
recording; across speaker, X is the same window of the same prompt read by another speaker.

Features: ``logmel`` (the ``zerospeech`` preset: 16 kHz, 25/10 ms, 80 mels, dB top 80, /80+1),
``mfcc`` (DCT-II, orthonormal, of those features; 13 coefficients) and, for the KL distance,
``melpost`` (each frame's linear mel magnitudes normalised to sum 1). Libri-Light L2-normalises every
frame before ANY distance (``ABXFeatureLoader(..., normalize=True)``), KL included; we do not, so the
like-for-like KL comparison feeds sqcodec the frames Libri-Light actually uses (L2-normalised, plus its
1e-12 column) with ``renormalise=False``; the ``kl (sqcodec default)`` row shows our own KL on the
posteriorgrams for information. Libri-Light is run with ``max_size_group``/``max_x_across`` large enough
that it samples nothing, on CPU.

    .venv/bin/python tools/abx_crosscheck.py [--realaudio DIR] [--out DIR] [--json PATH] [--tolerance 0.5]

Exit code 1 when a like-for-like pair differs by more than --tolerance points (or libriabx is missing).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqcodec.audio import load_mono, wave_to_features  # noqa: E402
from sqcodec.eval import abx as A  # noqa: E402

SPEAKERS = ("p225", "p226", "p227")
WINDOWS = 4
HALVES = 2
SHIFT = 0.01
SILENCE_DB = 35.0


def find_realaudio(explicit: str | None = None) -> Path | None:
    for cand in [explicit, os.environ.get("SQCODEC_REALAUDIO")]:
        if cand:
            return Path(cand) if (Path(cand) / "MANIFEST.tsv").is_file() else None
    for parent in (REPO, *REPO.parents):
        cand = parent / "shared" / "data" / "realaudio"
        if (cand / "MANIFEST.tsv").is_file():
            return cand
    return None


def speech_region(wave: np.ndarray, sr: int) -> tuple[float, float]:
    """(start, end) seconds of the frames whose RMS is within SILENCE_DB of the loudest 10 ms frame."""
    hop = int(round(SHIFT * sr))
    n = len(wave) // hop
    rms = np.sqrt((wave[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -SILENCE_DB)
    return float(loud[0] * SHIFT), float((loud[-1] + 1) * SHIFT)


def build_set(
    realaudio: Path, out: Path, prompts: int | None = None, windows: int = WINDOWS, unbalanced: bool = False
) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """Write ``out/vctk_windows.item`` and return it with the features ``{kind: {file id: (T, D)}}``
    (``prompts``: use only the first N shared prompts). ``unbalanced``: leave out p227's first prompt in
    window w0 and p226's second prompt in window w1, so that the (context, X speaker) cells differ between
    speakers and phone pairs and the two across-speaker averaging orders give different numbers."""
    from scipy.fft import dct

    root = realaudio / "speech" / "vctk16k"
    numbers = None
    for spk in SPEAKERS:
        have = {p.stem.split("_")[1] for p in (root / spk).glob(f"{spk}_*.flac")}
        numbers = have if numbers is None else numbers & have
    numbers = sorted(numbers or [])[:prompts]
    if len(numbers) < 2:
        raise SystemExit(f"{root}: fewer than 2 prompts shared by {', '.join(SPEAKERS)}")
    lines = [A.ITEM_HEADER]
    feats: dict[str, dict[str, np.ndarray]] = {"logmel": {}, "mfcc": {}, "melpost": {}}
    for spk in SPEAKERS:
        for num in numbers:
            fid = f"{spk}_{num}"
            path = root / spk / f"{fid}.flac"
            wave, _ = load_mono(path, 16000)
            logmel = wave_to_features(wave, "zerospeech", sample_rate=16000).T.astype(np.float32)  # (T, 80)
            feats["logmel"][fid] = logmel
            feats["mfcc"][fid] = dct(logmel.astype(np.float64), type=2, norm="ortho", axis=1)[:, :13].astype(
                np.float32
            )
            mag = 10.0 ** ((logmel.astype(np.float64) - 1.0) * 80.0 / 20.0)  # undo dB/80 + 1: linear mel
            feats["melpost"][fid] = (mag / mag.sum(1, keepdims=True)).astype(np.float32)
            start, end = speech_region(wave, 16000)
            step = (end - start) / (windows * HALVES)
            for w in range(windows):
                if unbalanced and (spk, num, w) in (
                    (SPEAKERS[2], numbers[0], 0),
                    (SPEAKERS[1], numbers[1], 1),
                ):
                    continue
                for h in range(HALVES):
                    k = w * HALVES + h
                    on, off = start + k * step, start + (k + 1) * step
                    lines.append(f"{fid} {on:.4f} {off:.4f} u{num} w{w} w{w} {spk}")
    out.mkdir(parents=True, exist_ok=True)
    item = out / "vctk_windows.item"
    item.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return item, feats


def libri_light_frames(x: np.ndarray) -> np.ndarray:
    """What Libri-Light's ``normalize_with_singularity`` feeds its distances: L2-normalised frames plus a
    1e-12 column (zero frames become a constant vector with a -2e12 column)."""
    x = x.astype(np.float64)
    norm = np.sqrt((x * x).sum(1, keepdims=True))
    zero = norm[:, 0] == 0
    y = np.where(zero[:, None], 1 / math.sqrt(x.shape[1]), x / np.where(norm == 0, 1, norm))
    col = np.where(zero, -2e12, 1e-12)[:, None]
    return np.concatenate([y, col], 1).astype(np.float32)


def run_libriabx(item: Path, feats: dict[str, np.ndarray], distance: str, work: Path) -> dict[str, float]:
    import libriabx

    folder = work / f"feats_{distance}_{id(feats)}"
    folder.mkdir(parents=True, exist_ok=True)
    for fid, arr in feats.items():
        np.save(folder / f"{fid}.npy", arr)
    args = libriabx.AbxArguments(
        path_data=str(folder),
        path_item_file=str(item),
        feature_size=SHIFT,
        cuda=False,
        file_extension=".npy",
        mode="all",
        distance_mode=distance,
        max_size_group=10_000,
        max_x_across=10_000,
    )
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)  # its deprecated torch.sparse constructors
        scores = libriabx.abx_eval(args)
    return {m: 100.0 * float(v) for m, v in scores.items()}


def run_ours(
    item: Path, feats: dict[str, np.ndarray], distance: str, averaging: str, renormalise: bool = True
):
    items = A.read_item_file(item)
    segs, dropped = A.segment_items(items, feats, SHIFT, 0.0, "libri-light", str(item))
    res = A.score_segments(segs, distance, A.MODES, averaging, renormalise=renormalise)
    return {m: res[m]["error"] for m in A.MODES}, res, len(dropped)


CASES = ("logmel", "mfcc", "melpost")


def crosscheck(
    realaudio: Path,
    out: Path,
    prompts: int | None = None,
    windows: int = WINDOWS,
    cases: tuple = CASES,
    unbalanced: bool = False,
) -> dict:
    """Run the comparisons ``cases`` (``melpost`` = KL); returns a JSON-able record (rows with both
    numbers and the difference)."""
    import libriabx

    item, feats = build_set(realaudio, out, prompts, windows, unbalanced)
    items = A.read_item_file(item)
    _, dropped = A.segment_items(items, feats["logmel"], SHIFT, 0.0, "libri-light", str(item))
    rows = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in cases:
            kl = name == "melpost"
            ref_dist, ours_dist = ("kl_symmetric", "kl") if kl else ("cosine", "cosine")
            t = time.perf_counter()
            ref = run_libriabx(item, feats[name], ref_dist, work)
            timings[f"libriabx {name} {ref_dist}"] = time.perf_counter() - t
            # KL: sqcodec gets the frames Libri-Light really scores (its L2 step), without renormalising
            mine = {k: libri_light_frames(v) for k, v in feats[name].items()} if kl else feats[name]
            t = time.perf_counter()
            ours, detail, _ = run_ours(item, mine, ours_dist, "libri-light", renormalise=not kl)
            timings[f"sqcodec {name} {ours_dist}"] = time.perf_counter() - t
            ours_zs, _, _ = run_ours(item, mine, ours_dist, "zerospeech2019", renormalise=not kl)
            for m in A.MODES:
                rows.append(
                    {
                        "features": name,
                        "distance": ours_dist,
                        "mode": m,
                        "libriabx": ref[m],
                        "sqcodec": ours[m],
                        "sqcodec_zerospeech2019_avg": ours_zs[m],
                        "abs_diff": abs(ref[m] - ours[m]),
                        "like_for_like": True,
                        "triplets": detail[m]["triplets"],
                    }
                )
            if kl:  # our own KL (frames renormalised to sum 1, no L2 step), for information
                own, _, _ = run_ours(item, feats[name], "kl", "libri-light")
                for m in A.MODES:
                    rows.append(
                        {
                            "features": name,
                            "distance": "kl (sqcodec default)",
                            "mode": m,
                            "libriabx": ref[m],
                            "sqcodec": own[m],
                            "sqcodec_zerospeech2019_avg": None,
                            "abs_diff": abs(ref[m] - own[m]),
                            "like_for_like": False,
                            "triplets": None,
                        }
                    )
    return {
        "item_file": str(item),
        "items": len(items),
        "items_dropped": len(dropped),
        "speakers": list(SPEAKERS),
        "unbalanced": unbalanced,
        "frame_shift": SHIFT,
        "libriabx_version": getattr(libriabx, "__version__", None),
        "rows": rows,
        "seconds": timings,
    }


def to_markdown(record: dict) -> str:
    lines = [
        "| features | distance | mode | libriabx (%) | sqcodec (%) | abs diff | sqcodec, ZS2019 avg. (%) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        zs = "" if r["sqcodec_zerospeech2019_avg"] is None else f"{r['sqcodec_zerospeech2019_avg']:.3f}"
        mark = "" if r["like_for_like"] else " (not like for like)"
        head = f"| {r['features']} | {r['distance']}{mark} | {r['mode']} "
        lines.append(head + f"| {r['libriabx']:.3f} | {r['sqcodec']:.3f} | {r['abs_diff']:.3f} | {zs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realaudio", help="real-audio folder (default: $SQCODEC_REALAUDIO or ../shared/...)")
    ap.add_argument("--out", type=Path, default=Path("exp/abx_crosscheck"), help="where the item file goes")
    ap.add_argument("--json", type=Path, help="write the record as JSON")
    ap.add_argument("--tolerance", type=float, default=0.5, help="max abs difference (points) allowed")
    ap.add_argument("--prompts", type=int, help="use only the first N prompts shared by the speakers")
    ap.add_argument("--unbalanced", action="store_true", help="leave some items out (see build_set)")
    ap.add_argument("--windows", type=int, default=WINDOWS, help="windows (contexts) per recording")
    ap.add_argument(
        "--cases",
        default=",".join(CASES),
        help="comma-separated subset of logmel,mfcc (cosine), melpost (KL)",
    )
    args = ap.parse_args(argv)
    realaudio = find_realaudio(args.realaudio)
    if realaudio is None:
        print("abx_crosscheck: error: real recordings not found (set SQCODEC_REALAUDIO)", file=sys.stderr)
        return 1
    try:
        import libriabx  # noqa: F401
    except Exception as err:  # ImportError, or numpy ABI errors of the prebuilt wheels
        print(
            f"abx_crosscheck: error: zerospeech-libriabx is not importable ({type(err).__name__}: {err}); "
            "install it with: uv pip install --no-binary zerospeech-libriabx zerospeech-libriabx==1.0.5",
            file=sys.stderr,
        )
        return 1
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        ap.error(f"--cases: unknown {unknown}; choose from {', '.join(CASES)}")
    record = crosscheck(realaudio, args.out, args.prompts, args.windows, cases, args.unbalanced)
    print(to_markdown(record), end="")
    print(
        f"\n{record['items']} items ({record['items_dropped']} without frames), speakers "
        f"{', '.join(record['speakers'])}; item file {record['item_file']}"
    )
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in record["seconds"].items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    worst = max(r["abs_diff"] for r in record["rows"] if r["like_for_like"])
    print(f"largest like-for-like difference: {worst:.4f} points (tolerance {args.tolerance})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
