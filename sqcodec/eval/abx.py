"""Minimal-pair ABX discrimination (ZeroSpeech 2019 / Libri-Light), our own implementation.

Inputs: an item file (one line per segment) and one feature matrix per file (frames x dims; see
:mod:`sqcodec.eval.abx_features` for feature folders and for features computed by an sqcodec model).

**Item file** (the Libri-Light / ZeroSpeech ``.item`` format)::

    #file onset offset #phone prev-phone next-phone speaker
    S003_1178890909 0.3325 0.4025 ih s t S003

The first line is a header (it must start with ``#``); onset and offset are in seconds; the context of an
item is the pair ``(prev-phone, next-phone)``. Blank lines and later lines starting with ``#`` are ignored.

**Frames of an item.** Frame ``i`` of a file covers ``[t0 + i·shift, t0 + (i+1)·shift)`` (centre
``t0 + (i + 1/2)·shift``; ``t0 = 0`` for feature folders, as Libri-Light assumes). ``selection="libri-light"``
(default) keeps exactly the frames Libri-Light's ``ABXFeatureLoader`` keeps, the slice
``[ceil((onset - t0)/shift - 1/2), floor((offset - t0)/shift - 1/2))``: the frames whose centre lies in
``[onset, offset - shift]`` (the end index is exclusive, so the last frame whose centre lies in
``(offset - shift, offset]`` is dropped). ``selection="centre"`` keeps every frame whose centre lies in
``[onset, offset]``. Items left with no frame are dropped and counted (Libri-Light drops them silently).

**Frame distances** (``distance``):

* ``cosine``: angular distance ``arccos(x·y / (|x| |y|)) / π`` in ``[0, 1]`` (ABXpy and Libri-Light);
  a zero frame is at distance 1 from any other frame and 0 from another zero frame;
* ``kl``: symmetrised Kullback-Leibler divergence for posteriorgrams, frames renormalised to sum 1,
  ``½ Σ_k p_k ln((p_k+ε)/(q_k+ε)) + ½ Σ_k q_k ln((q_k+ε)/(p_k+ε))`` with ``ε = 1e-6`` (Libri-Light's ε);
* ``codes``: code identity, the fraction of code layers that differ (0 when all codes are equal, 1 when
  all differ; 0/1 for single-layer codes).

**Sequence distance**: DTW with steps (1,0), (0,1), (1,1), all of weight 1, of the frame distances between
X (rows) and A or B (columns), divided by the number of cells of the optimal path, found by backtracking
from the last cell preferring diagonal, then (i, j-1), then (i-1, j) on ties: ABXpy's and Libri-Light's
``_dtw(..., normalized=True)``.

**Triplets and cells.** A and X carry the same phone, B another phone, all three the same context.
*Within speaker*: A, B and X come from one speaker and X ≠ A (one cell per context, speaker and ordered phone
pair (a, b)). *Across speaker*: A and B come from one speaker, X from another (one cell per context, speaker
of A/B, speaker of X and ordered phone pair). A triplet scores 1 if d(A,X) < d(B,X), ½ on a tie and 0
otherwise; a cell's score is the mean over all its triplets.

**Averaging** (ABX error = 100 · (1 − mean score), in %):

* within: cells -> mean over contexts for each (speaker, a, b) -> mean over speakers for each (a, b) ->
  mean over ordered phone pairs (ZeroSpeech's ``_average`` and Libri-Light agree);
* across, ``averaging="zerospeech2019"`` (default; ZeroSpeech 2019/2020 ``evaluation/abx.py``
  ``_average``): mean over contexts for each (speaker A/B, speaker X, a, b) -> mean over speaker pairs for
  each (a, b) -> mean over phone pairs;
* across, ``averaging="libri-light"`` (Libri-Light ``eval_ABX.py``): mean over (context, speaker X) for each
  (speaker A/B, a, b) -> mean over speakers A/B -> mean over phone pairs.

The two across averages are equal whenever every (speaker A/B, a, b) sees the same set of (context,
speaker X) cells, and differ slightly otherwise. Every triplet is used unless ``max_size_group`` (items per
(context, speaker, phone) group) or ``max_x_across`` (X speakers per (context, speaker, phone)) ask for a
seeded random subset, as Libri-Light does with its defaults 10 and 5.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AVERAGING",
    "DISTANCES",
    "MODES",
    "SELECTIONS",
    "ABXError",
    "Item",
    "Segment",
    "abx",
    "dtw",
    "dtw_batch",
    "frame_distances",
    "read_item_file",
    "score_segments",
    "segment_items",
    "select_frames",
    "to_markdown",
    "write_json",
    "write_markdown",
]

DISTANCES = ("cosine", "kl", "codes")
MODES = ("within", "across")
AVERAGING = ("zerospeech2019", "libri-light")
SELECTIONS = ("libri-light", "centre")
ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
KL_EPS = 1e-6
#: cells of the padded (pairs, rows, columns) DTW blocks computed at once
_BLOCK_CELLS = 2_000_000


class ABXError(ValueError):
    """Bad ABX input (item file, features, options): a one-line message naming the file."""


# --------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Item:
    """One line of an item file (``line``: its 1-based line number)."""

    file: str
    onset: float
    offset: float
    phone: str
    prev: str
    next: str
    speaker: str
    line: int = 0

    @property
    def context(self) -> tuple[str, str]:
        return (self.prev, self.next)


def read_item_file(path: str | os.PathLike) -> list[Item]:
    """Parse an item file; raises :class:`ABXError` ``"<path>:<line>: <problem>"`` on any bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ABXError(f"{path}: item file not found") from None
    except IsADirectoryError:
        raise ABXError(f"{path}: is a folder, not an item file") from None
    except UnicodeDecodeError:
        raise ABXError(f"{path}: not a UTF-8 text item file") from None
    except OSError as err:
        raise ABXError(f"{path}: cannot read ({err.strerror or err})") from None
    lines = text.splitlines()
    if not lines or not text.strip():
        raise ABXError(f"{path}: empty item file (want the header '{ITEM_HEADER}' and one line per item)")
    header = lines[0].split()
    if not header or not header[0].startswith("#"):
        raise ABXError(f"{path}:1: missing header line '{ITEM_HEADER}'")
    if len(header) != 7:
        raise ABXError(f"{path}:1: header has {len(header)} columns, expected 7 ('{ITEM_HEADER}')")
    items: list[Item] = []
    for n, raw in enumerate(lines[1:], start=2):
        cols = raw.split()
        if not cols or cols[0].startswith("#"):
            continue
        if len(cols) != 7:
            raise ABXError(
                f"{path}:{n}: expected 7 columns (file onset offset phone prev-phone next-phone speaker), "
                f"got {len(cols)}"
            )
        try:
            onset, offset = float(cols[1]), float(cols[2])
        except ValueError:
            raise ABXError(
                f"{path}:{n}: onset/offset must be numbers in seconds, got {cols[1]!r} {cols[2]!r}"
            ) from None
        if not (math.isfinite(onset) and math.isfinite(offset)):
            raise ABXError(f"{path}:{n}: onset/offset must be finite, got {cols[1]} {cols[2]}")
        if onset < 0:
            raise ABXError(f"{path}:{n}: negative onset {cols[1]}")
        if onset >= offset:
            raise ABXError(f"{path}:{n}: onset {cols[1]} is not before offset {cols[2]}")
        items.append(Item(cols[0], onset, offset, cols[3], cols[4], cols[5], cols[6], n))
    if not items:
        raise ABXError(f"{path}: no items after the header")
    return items


def select_frames(
    num_frames: int,
    onset: float,
    offset: float,
    shift: float,
    t0: float = 0.0,
    selection: str = "libri-light",
) -> tuple[int, int]:
    """Frame slice ``[start, stop)`` of an item (see the module docstring; may be empty)."""
    rate = 1.0 / shift
    start = max(0, math.ceil(rate * (onset - t0) - 0.5))
    last = math.floor(rate * (offset - t0) - 0.5)
    if selection == "libri-light":
        stop = last
    elif selection == "centre":
        stop = last + 1
    else:
        raise ABXError(f"unknown frame selection {selection!r} (known: {', '.join(SELECTIONS)})")
    return start, min(num_frames, stop)


@dataclass
class Segment:
    """An item's frames ``(n, dims)`` with its labels."""

    frames: np.ndarray
    phone: str
    context: tuple[str, str]
    speaker: str
    item: Item | None = None


def segment_items(
    items: Sequence[Item],
    features: dict[str, np.ndarray],
    shift: float,
    t0: float = 0.0,
    selection: str = "libri-light",
    where: str = "item file",
) -> tuple[list[Segment], list[Item]]:
    """Cut each item's frames from ``features[item.file]`` (``(frames, dims)``). Returns the segments and
    the items dropped for having no frame. A missing file is an :class:`ABXError` naming the line."""
    if not shift > 0 or not math.isfinite(shift):
        raise ABXError(f"frame shift must be a positive number of seconds, got {shift!r}")
    segs: list[Segment] = []
    dropped: list[Item] = []
    for it in items:
        feats = features.get(it.file)
        if feats is None:
            raise ABXError(f"{where}:{it.line}: no features for file {it.file!r}")
        a, b = select_frames(len(feats), it.onset, it.offset, shift, t0, selection)
        if b <= a:
            dropped.append(it)
            continue
        segs.append(Segment(feats[a:b], it.phone, it.context, it.speaker, it))
    return segs, dropped


# --------------------------------------------------------------------------------------------- distances


def _prepare(frames: np.ndarray, distance: str, renormalise: bool = True) -> np.ndarray:
    """Per-frame preprocessing of one segment for :func:`frame_distances` (float64 / int64)."""
    x = np.asarray(frames)
    if x.ndim == 1:
        x = x[:, None]
    if distance == "cosine":
        x = x.astype(np.float64)
        norm = np.sqrt((x * x).sum(-1, keepdims=True))
        zero = norm[:, 0] == 0
        out = np.zeros((len(x), x.shape[1] + 1))
        out[~zero, :-1] = x[~zero] / norm[~zero]
        out[zero, -1] = 1.0  # marker column: zero frames, handled in _block_distances
        return out
    if distance == "kl":
        x = x.astype(np.float64)
        if renormalise:
            x = x / x.sum(-1, keepdims=True)
        return x
    if distance == "codes":
        return x.astype(np.int64)
    raise ABXError(f"unknown distance {distance!r} (known: {', '.join(DISTANCES)})")


def _block_distances(x: np.ndarray, y: np.ndarray, distance: str) -> np.ndarray:
    """Frame distances of padded prepared blocks ``x (B, N, D)``, ``y (B, M, D)`` -> ``(B, N, M)``. For
    ``codes`` the count of differing layers (divided by the layer count after the DTW, so that DTW sums
    stay exact integers)."""
    if distance == "cosine":
        xz, yz = x[..., -1] > 0, y[..., -1] > 0
        dot = np.matmul(x[..., :-1], y[..., :-1].transpose(0, 2, 1))
        d = np.arccos(np.clip(dot, -1.0, 1.0)) / math.pi
        one_zero = xz[:, :, None] != yz[:, None, :]
        both_zero = xz[:, :, None] & yz[:, None, :]
        d[one_zero] = 1.0
        d[both_zero] = 0.0
        return d
    if distance == "kl":
        lx, ly = np.log(x + KL_EPS), np.log(y + KL_EPS)
        self_x = (x * lx).sum(-1)
        self_y = (y * ly).sum(-1)
        d = 0.5 * (
            self_x[:, :, None]
            + self_y[:, None, :]
            - np.matmul(x, ly.transpose(0, 2, 1))
            - np.matmul(lx, y.transpose(0, 2, 1))
        )
        return np.maximum(d, 0.0)
    if distance == "codes":
        return (x[:, :, None, :] != y[:, None, :, :]).sum(-1).astype(np.float64)
    raise ABXError(f"unknown distance {distance!r} (known: {', '.join(DISTANCES)})")


def frame_distances(x: np.ndarray, y: np.ndarray, distance: str = "cosine") -> np.ndarray:
    """Frame-wise distance matrix ``(len(x), len(y))`` between two sequences ``(frames, dims)`` (codes:
    ``(frames, layers)`` or ``(frames,)``): see the module docstring for the definitions."""
    px, py = _prepare(x, distance), _prepare(y, distance)
    d = _block_distances(px[None], py[None], distance)[0]
    if distance == "codes":
        d /= px.shape[1]
    return d


def _dtw_costs(dist: np.ndarray) -> np.ndarray:
    """Accumulated costs of a batch ``(B, N, M)``: ``c[:, i + 1, j + 1] = cost[i, j]`` with ``+inf``
    borders (``c[:, 0, 0] = 0``), ``cost[i, j] = dist[i, j] + min(cost[i-1, j], cost[i-1, j-1],
    cost[i, j-1])``, filled one anti-diagonal at a time for the whole batch."""
    b_, n_, m_ = dist.shape
    c = np.full((b_, n_ + 1, m_ + 1), np.inf)
    c[:, 0, 0] = 0.0
    for k in range(n_ + m_ - 1):
        i = np.arange(max(0, k - m_ + 1), min(k, n_ - 1) + 1)
        j = k - i
        best = np.minimum(np.minimum(c[:, i, j + 1], c[:, i, j]), c[:, i + 1, j])
        c[:, i + 1, j + 1] = dist[:, i, j] + best
    return c


def _path_lengths(c: np.ndarray, nx: np.ndarray, ny: np.ndarray, transposed: bool = False) -> np.ndarray:
    """Cells on the backtracked optimal path from ``(nx-1, ny-1)``: diagonal when it is the smallest
    (ties included), else the smaller of (i, j-1) and (i-1, j), ties to (i, j-1). ``transposed``: the
    path the same rule finds for the transposed problem (``y`` as rows, cost ``c`` transposed), whose
    ties between the two straight moves go to (i-1, j) instead."""
    b_ = len(nx)
    batch = np.arange(b_)
    i, j = nx - 1, ny - 1
    length = np.ones(b_, dtype=np.int64)
    active = (i > 0) & (j > 0)
    while active.any():
        ba, ia, ja = batch[active], i[active], j[active]
        up = c[ba, ia, ja + 1]  # cost[i-1, j]
        left = c[ba, ia + 1, ja]  # cost[i, j-1]
        diag = c[ba, ia, ja]  # cost[i-1, j-1]
        go_diag = (diag <= left) & (diag <= up)
        if transposed:
            go_up = ~go_diag & (up <= left)
            go_left = ~go_diag & ~go_up
        else:
            go_left = ~go_diag & (left <= up)
            go_up = ~go_diag & ~go_left
        i[active] = ia - (go_diag | go_up)
        j[active] = ja - (go_diag | go_left)
        length[active] += 1
        active = (i > 0) & (j > 0)
    return length + i + j  # plus the straight run along the first row or column


def _check_lengths(dist: np.ndarray, nx: Any, ny: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 3:
        raise ValueError(f"want a (B, N, M) batch of distance matrices, got shape {dist.shape}")
    nx = np.asarray(nx, dtype=np.int64).reshape(-1)
    ny = np.asarray(ny, dtype=np.int64).reshape(-1)
    if len(nx) != dist.shape[0] or len(ny) != dist.shape[0]:
        raise ValueError("one length per matrix is needed")
    if np.any(nx < 1) or np.any(ny < 1) or np.any(nx > dist.shape[1]) or np.any(ny > dist.shape[2]):
        raise ValueError("sequence lengths must be in 1..padded size")
    return dist, nx, ny


def dtw_batch(
    dist: np.ndarray, nx: Sequence[int] | np.ndarray, ny: Sequence[int] | np.ndarray, both: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Path-normalised DTW of a batch of padded frame-distance matrices ``dist (B, N, M)`` whose valid
    parts are ``[:nx[b], :ny[b]]``. Returns ``(B,)`` float64: the cost of the optimal path divided by its
    number of cells (ABXpy/Libri-Light ``_dtw(normalized=True)``, including their backtracking tie order:
    diagonal, then (i, j-1), then (i-1, j)). Padding values do not matter.

    ``both=True`` also returns the DTW of the transposed matrices (``y`` as rows): same total cost (the
    recursion is symmetric), but the backtracking may find a path of another length on ties.
    """
    dist, nx, ny = _check_lengths(dist, nx, ny)
    c = _dtw_costs(dist)
    total = c[np.arange(len(nx)), nx, ny]
    forward = total / _path_lengths(c, nx, ny)
    if not both:
        return forward
    return forward, total / _path_lengths(c, nx, ny, transposed=True)


def dtw(dist: np.ndarray) -> float:
    """Path-normalised DTW of one frame-distance matrix ``(N, M)`` (see :func:`dtw_batch`)."""
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 2 or 0 in dist.shape:
        raise ValueError(f"want a non-empty (N, M) distance matrix, got shape {dist.shape}")
    return float(dtw_batch(dist[None], [dist.shape[0]], [dist.shape[1]])[0])


def _pair_distances(
    prepared: list[np.ndarray], needed: set[tuple[int, int]], distance: str, scale: float
) -> dict[tuple[int, int], float]:
    """DTW distance ``d(x, y)`` (x = rows) for each needed ordered pair. Each unordered pair is computed
    once (frame distances and DTW costs are symmetric; only the path length is found per direction), in
    padded blocks of similar lengths."""
    table: dict[tuple[int, int], float] = {}
    canon = sorted({(min(x, y), max(x, y)) for x, y in needed})
    if not canon:
        return table
    pairs = np.array(canon, dtype=np.int64).reshape(-1, 2)
    lens = np.array([len(p) for p in prepared])
    lx, ly = lens[pairs[:, 0]], lens[pairs[:, 1]]
    order = np.lexsort((ly, lx))
    dims = prepared[0].shape[1]
    weight = dims if distance == "codes" else 1
    start = 0
    while start < len(order):
        stop = start + 1
        mx, my = lx[order[start]], ly[order[start]]
        while stop < len(order):
            nx_, ny_ = max(mx, lx[order[stop]]), max(my, ly[order[stop]])
            if (stop - start + 1) * nx_ * ny_ * weight > _BLOCK_CELLS:
                break
            mx, my, stop = nx_, ny_, stop + 1
        idx = order[start:stop]
        bx = np.zeros((len(idx), mx, dims), dtype=prepared[0].dtype)
        by = np.zeros((len(idx), my, dims), dtype=prepared[0].dtype)
        for r, p in enumerate(idx):
            a, b = prepared[pairs[p, 0]], prepared[pairs[p, 1]]
            bx[r, : len(a)] = a
            by[r, : len(b)] = b
        fwd, rev = dtw_batch(_block_distances(bx, by, distance), lx[idx], ly[idx], both=True)
        for r, p in enumerate(idx):
            x, y = int(pairs[p, 0]), int(pairs[p, 1])
            table[(x, y)] = float(fwd[r] / scale)
            table[(y, x)] = float(rev[r] / scale)
        start = stop
    return table


# --------------------------------------------------------------------------------------------- scoring


def _theta(dxa: np.ndarray, dxb: np.ndarray, exclude_diagonal: bool) -> tuple[float, int]:
    """Mean score of the triplets of one cell: ``dxa (nx, na)``, ``dxb (nx, nb)`` (rows: X items).
    ``exclude_diagonal``: within-speaker, X and A range over the same items and X ≠ A."""
    da, db = dxa[:, :, None], dxb[:, None, :]  # (nx, na, 1), (nx, 1, nb)
    sc = (da < db).astype(np.float64) + 0.5 * (da == db)
    if exclude_diagonal:
        n = dxa.shape[0]
        keep = ~np.eye(n, dtype=bool)
        sc = sc[keep]
    count = int(sc.size)
    return float(sc.sum() / count), count


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return float(sum(v) / len(v))


def score_segments(
    segments: Sequence[Segment],
    distance: str = "cosine",
    modes: Sequence[str] = MODES,
    averaging: str = "zerospeech2019",
    max_size_group: int | None = None,
    max_x_across: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    renormalise: bool = True,
) -> dict[str, Any]:
    """ABX error rates of labelled segments (see the module docstring for every definition).

    Returns ``{mode: {"error": %, "cells": n, "triplets": n, "phone_pairs": {"a|b": {...}}} | None}``
    for each requested mode (``None``: no triplet exists for that mode). ``progress(done, total)`` is
    called after each context. ``renormalise=False`` skips the sum-to-one step of ``kl`` (for comparing
    with implementations that feed other vectors to the same formula).
    """
    if distance not in DISTANCES:
        raise ABXError(f"unknown distance {distance!r} (known: {', '.join(DISTANCES)})")
    for m in modes:
        if m not in MODES:
            raise ABXError(f"unknown ABX mode {m!r} (known: {', '.join(MODES)})")
    if averaging not in AVERAGING:
        raise ABXError(f"unknown averaging {averaging!r} (known: {', '.join(AVERAGING)})")
    for name, v in (("max_size_group", max_size_group), ("max_x_across", max_x_across)):
        if v is not None and v < 1:
            raise ABXError(f"{name} must be >= 1, got {v}")
    if not segments:
        raise ABXError("no items with frames to score")
    dims = {np.asarray(s.frames).reshape(len(s.frames), -1).shape[1] for s in segments}
    if len(dims) != 1:
        raise ABXError(f"segments have different feature dimensions: {sorted(dims)}")
    prepared = [_prepare(s.frames, distance, renormalise) for s in segments]
    scale = float(prepared[0].shape[1]) if distance == "codes" else 1.0
    rng = np.random.default_rng(seed)

    # groups[context][(speaker, phone)] -> item indices (in item-file order, optionally subsampled)
    groups: dict[tuple[str, str], dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(list))
    for k, s in enumerate(segments):
        groups[s.context][(s.speaker, s.phone)].append(k)
    if max_size_group is not None:
        for g in groups.values():
            for key, members in g.items():
                if len(members) > max_size_group:
                    g[key] = sorted(rng.choice(members, size=max_size_group, replace=False).tolist())

    within_cells: list[tuple[str, ...]] = []  # (context, speaker, a, b)
    within_scores: list[tuple[float, int]] = []
    across_cells: list[tuple[str, ...]] = []  # (context, speaker A/B, speaker X, a, b)
    across_scores: list[tuple[float, int]] = []
    contexts = sorted(groups)
    for done, ctx in enumerate(contexts, start=1):
        g = groups[ctx]
        by_speaker: dict[str, list[str]] = defaultdict(list)
        for spk, ph in sorted(g):
            by_speaker[spk].append(ph)
        # the triplets of this context, then every (X, A/B) item pair they need, computed once
        plan: list[tuple[str, tuple, list[int], list[int], list[int]]] = []
        for spk, phones in by_speaker.items():
            if len(phones) < 2:
                continue
            for a in phones:
                ga = g[(spk, a)]
                others = [b for b in phones if b != a]
                if "within" in modes and len(ga) >= 2:
                    for b in others:
                        plan.append(("within", (ctx, spk, a, b), ga, ga, g[(spk, b)]))
                if "across" in modes:
                    xspk = [s2 for s2 in sorted(by_speaker) if s2 != spk and (s2, a) in g]
                    if max_x_across is not None and len(xspk) > max_x_across:
                        xspk = sorted(rng.choice(xspk, size=max_x_across, replace=False).tolist())
                    for s2 in xspk:
                        for b in others:
                            plan.append(("across", (ctx, spk, s2, a, b), g[(s2, a)], ga, g[(spk, b)]))
        needed: set[tuple[int, int]] = set()
        for _, _, gx, ga, gb in plan:
            needed.update((x, y) for x in gx for y in ga)
            needed.update((x, y) for x in gx for y in gb)
        table = _pair_distances(prepared, needed, distance, scale)
        for mode, key, gx, ga, gb in plan:
            dxa = np.array([[table[(x, y)] for y in ga] for x in gx])
            dxb = np.array([[table[(x, y)] for y in gb] for x in gx])
            if mode == "within":
                within_cells.append(key)
                within_scores.append(_theta(dxa, dxb, exclude_diagonal=True))
            else:
                across_cells.append(key)
                across_scores.append(_theta(dxa, dxb, exclude_diagonal=False))
        if progress is not None:
            progress(done, len(contexts))

    out: dict[str, Any] = {}
    if "within" in modes:
        # (context, speaker, a, b): contexts -> speakers -> phone pairs
        out["within"] = _average(within_cells, within_scores, [(1, 2, 3), (2, 3)])
    if "across" in modes:
        if averaging == "zerospeech2019":
            # (context, spk, spk_x, a, b): contexts -> speaker pairs -> phone pairs
            stages = [(1, 2, 3, 4), (3, 4)]
        else:
            # libri-light: (context, speaker X) jointly -> speaker A/B -> phone pairs
            stages = [(1, 3, 4), (3, 4)]
        out["across"] = _average(across_cells, across_scores, stages)
    return out


def _average(
    cells: list[tuple], scores: list[tuple[float, int]], stages: list[tuple[int, ...]]
) -> dict | None:
    """Average cell scores stage by stage: each stage keeps the cell-key positions it lists (the rest are
    averaged out); the last stage's keys are the ordered phone pairs, averaged at the end."""
    if not cells:
        return None
    level: dict[tuple, list[float]] = defaultdict(list)
    for key, (sc, _) in zip(cells, scores, strict=True):
        level[tuple(key[i] for i in stages[0])].append(sc)
    first = stages[0]
    for stage in stages[1:]:
        pos = [first.index(i) for i in stage]
        nxt: dict[tuple, list[float]] = defaultdict(list)
        for key, vals in level.items():
            nxt[tuple(key[p] for p in pos)].append(_mean(vals))
        level, first = nxt, stage
    pair_score = {key: _mean(vals) for key, vals in level.items()}
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for key, (_, n) in zip(cells, scores, strict=True):
        c = counts[(key[-2], key[-1])]
        c[0] += 1
        c[1] += n
    phone_pairs = {
        f"{a}|{b}": {
            "a": a,
            "b": b,
            "error": 100.0 * (1.0 - pair_score[(a, b)]),
            "cells": counts[(a, b)][0],
            "triplets": counts[(a, b)][1],
        }
        for (a, b) in sorted(pair_score)
    }
    return {
        "error": 100.0 * (1.0 - _mean(pair_score.values())),
        "phone_pair_count": len(pair_score),
        "cells": len(cells),
        "triplets": int(sum(n for _, n in scores)),
        "phone_pairs": phone_pairs,
    }


# --------------------------------------------------------------------------------------------- one call


def abx(
    item_file: str | os.PathLike,
    features: dict[str, np.ndarray],
    shift: float,
    t0: float = 0.0,
    distance: str = "cosine",
    modes: Sequence[str] = MODES,
    averaging: str = "zerospeech2019",
    selection: str = "libri-light",
    max_size_group: int | None = None,
    max_x_across: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    items: Sequence[Item] | None = None,
) -> dict[str, Any]:
    """Score ``features`` (file id -> ``(frames, dims)``) on an item file: the full report (settings,
    counts, ``within``/``across`` results). ``items``: already parsed items of ``item_file``."""
    items = read_item_file(item_file) if items is None else items
    segs, dropped = segment_items(items, features, shift, t0, selection, where=str(item_file))
    if not segs:
        raise ABXError(f"{item_file}: no item has a frame (frame shift {shift} s, selection {selection})")
    result = score_segments(segs, distance, modes, averaging, max_size_group, max_x_across, seed, progress)
    report: dict[str, Any] = {
        "task": "minimal-pair ABX (ZeroSpeech 2019 / Libri-Light item file)",
        "item_file": str(item_file),
        "distance": distance,
        "frame_shift": float(shift),
        "frame_t0": float(t0),
        "selection": selection,
        "averaging": averaging,
        "max_size_group": max_size_group,
        "max_x_across": max_x_across,
        "seed": seed,
        "items": len(items),
        "items_used": len(segs),
        "items_dropped": len(dropped),
        "dropped_lines": [it.line for it in dropped[:20]],
        "files": len({it.file for it in items}),
        "speakers": len({it.speaker for it in items}),
        "phones": len({it.phone for it in items}),
        "contexts": len({it.context for it in items}),
        "provenance": _provenance(),
    }
    report.update(result)
    return report


def _provenance() -> dict[str, str]:
    from .. import __version__

    return {"sqcodec": __version__, "numpy": np.__version__, "python": platform.python_version()}


# --------------------------------------------------------------------------------------------- reports


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def to_markdown(result: dict[str, Any], max_pairs: int | None = None) -> str:
    """Summary table (error % per mode) and, unless ``max_pairs == 0``, the per-phone-pair breakdown
    (the ``max_pairs`` hardest pairs by across, else within, error; all when ``None``)."""
    modes = [m for m in MODES if m in result]
    lines = [
        "| ABX error (%) ↓ | " + " | ".join(modes) + " |",
        "|---|" + "---:|" * len(modes),
        f"| {result.get('distance', '')} | "
        + " | ".join(_fmt((result[m] or {}).get("error")) for m in modes)
        + " |",
    ]
    notes = [
        f"item file: {result.get('item_file')} ({result.get('items_used')} of {result.get('items')} items "
        f"used, {result.get('items_dropped')} without frames; {result.get('speakers')} speakers, "
        f"{result.get('phones')} phones, {result.get('contexts')} contexts)",
        f"frames: shift {result.get('frame_shift')} s, t0 {result.get('frame_t0')} s, selection "
        f"{result.get('selection')}; across averaging: {result.get('averaging')}",
    ]
    if result.get("source"):
        notes.append(f"features: {result['source']}")
    for m in modes:
        r = result[m]
        if r is None:
            notes.append(f"{m}: no triplets (no group with the items this mode needs)")
        else:
            notes.append(
                f"{m}: {r['triplets']} triplets in {r['cells']} cells, {r['phone_pair_count']} phone pairs"
            )
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if max_pairs == 0:
        return text
    keys: set[str] = set()
    for m in modes:
        if result[m] is not None:
            keys.update(result[m]["phone_pairs"])
    if not keys:
        return text

    def err(m: str, k: str) -> float | None:
        r = result[m]
        return None if r is None or k not in r["phone_pairs"] else r["phone_pairs"][k]["error"]

    rank = "across" if "across" in modes and result["across"] is not None else modes[0]
    ordered = sorted(keys, key=lambda k: (-(err(rank, k) if err(rank, k) is not None else -1.0), k))
    if max_pairs is not None:
        ordered = ordered[:max_pairs]
    text += "\n| A/X phone | B phone | " + " | ".join(modes) + " |\n|---|---|" + "---:|" * len(modes) + "\n"
    for k in ordered:
        a, b = k.split("|", 1)
        text += f"| {a} | {b} | " + " | ".join(_fmt(err(m, k)) for m in modes) + " |\n"
    return text


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the report atomically as JSON; creates the parent folder."""
    from ..audio import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(result), indent=1) + "\n", encoding="utf-8")
    return path


def write_markdown(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write :func:`to_markdown` (with every phone pair) atomically; creates the parent folder."""
    from ..audio import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(to_markdown(result), encoding="utf-8")
    return path
