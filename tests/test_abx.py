"""ABX (sqcodec.eval.abx, sqcodec.eval.abx_features, ``sqcodec abx``): known answers on hand-built item
sets, frame selection, distances, DTW, averaging orders, bad input and model representations.

The comparison with the reference implementation (zerospeech-libriabx) is in test_abx_crosscheck.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import typer
from helpers import TINY_CODEC
from typer.testing import CliRunner

from sqcodec.eval import abx as A
from sqcodec.eval import abx_features as F

HEADER = A.ITEM_HEADER


def _write_items(path, rows, header=HEADER):
    lines = ([header] if header is not None else []) + [" ".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _angle(deg: float, n: int = 1) -> np.ndarray:
    """``n`` identical 2-D frames at angle ``deg``."""
    r = math.radians(deg)
    return np.tile([math.cos(r), math.sin(r)], (n, 1))


def _seg(frames, phone, speaker, context=("x", "y")):
    return A.Segment(np.asarray(frames, dtype=np.float64), phone, context, speaker)


# --------------------------------------------------------------------------------------------- item files


def test_read_item_file(tmp_path):
    p = _write_items(
        tmp_path / "a.item",
        [("f1", 0.1, 0.25, "ah", "b", "t", "s1"), ("f2", "0", "1e-1", "t", "#", "ah", "s2")],
    )
    items = A.read_item_file(p)
    assert items == [
        A.Item("f1", 0.1, 0.25, "ah", "b", "t", "s1", 2),
        A.Item("f2", 0.0, 0.1, "t", "#", "ah", "s2", 3),
    ]
    assert items[0].context == ("b", "t")


@pytest.mark.parametrize(
    "rows, header, expect",
    [
        ([("f1", 0.1, 0.2, "a", "b", "c", "s")], None, ":1: missing header"),
        ([("f1", 0.1, 0.2, "a", "b", "c")], HEADER, ":2: expected 7 columns"),
        (
            [("f1", 0.1, 0.2, "a", "b", "c", "s"), ("f1", 0.3, 0.2, "a", "b", "c", "s")],
            HEADER,
            ":3: onset 0.3 is not before",
        ),
        ([("f1", 0.2, 0.2, "a", "b", "c", "s")], HEADER, ":2: onset 0.2 is not before"),
        ([("f1", "x", 0.2, "a", "b", "c", "s")], HEADER, ":2: onset/offset must be numbers"),
        ([("f1", "nan", 0.2, "a", "b", "c", "s")], HEADER, ":2: onset/offset must be finite"),
        ([("f1", -0.1, 0.2, "a", "b", "c", "s")], HEADER, ":2: negative onset"),
        ([], HEADER, "no items after the header"),
        ([("f1", 0.1, 0.2, "a", "b", "c", "s")], "#file onset offset #phone", ":1: header has 4 columns"),
    ],
)
def test_bad_item_files(tmp_path, rows, header, expect):
    p = _write_items(tmp_path / "bad.item", rows, header)
    with pytest.raises(A.ABXError) as err:
        A.read_item_file(p)
    msg = str(err.value)
    assert msg.startswith(str(p)) and expect in msg and "\n" not in msg


def test_missing_and_empty_item_file(tmp_path):
    with pytest.raises(A.ABXError, match="item file not found"):
        A.read_item_file(tmp_path / "nope.item")
    (tmp_path / "empty.item").write_text("")
    with pytest.raises(A.ABXError, match="empty item file"):
        A.read_item_file(tmp_path / "empty.item")


# --------------------------------------------------------------------------------------------- frames


def test_select_frames_libri_light_and_centre():
    # 10 ms frames, frame i covers [i, i+1) * 10 ms (centre (i + 0.5) * 10 ms)
    assert A.select_frames(100, 0.1, 0.2, 0.01) == (10, 19)  # Libri-Light drops frame 19 (centre 0.195)
    assert A.select_frames(100, 0.1, 0.2, 0.01, selection="centre") == (10, 20)
    assert A.select_frames(100, 0.104, 0.2049, 0.01, selection="centre") == (10, 20)  # centres 0.105 .. 0.195
    assert A.select_frames(100, 0.1051, 0.2, 0.01, selection="centre") == (11, 20)
    assert A.select_frames(15, 0.1, 0.2, 0.01) == (10, 15)  # clipped to the file
    assert A.select_frames(100, 0.1, 0.112, 0.01) == (10, 10)  # 1.2 frames: empty for Libri-Light
    assert A.select_frames(100, 0.1, 0.112, 0.01, selection="centre") == (10, 11)
    # t0 shifts the grid: frame i covers [t0 + i*shift, ...)
    assert A.select_frames(100, 0.1, 0.2, 0.032, t0=-0.008) == (3, 6)  # centres 0.104 .. 0.168 (0.2 dropped)
    with pytest.raises(A.ABXError, match="unknown frame selection"):
        A.select_frames(10, 0, 1, 0.01, selection="nope")


def test_items_without_frames_are_dropped_and_counted(tmp_path):
    p = _write_items(
        tmp_path / "i.item",
        [("f", 0.0, 0.05, "a", "x", "y", "s"), ("f", 0.1, 0.112, "b", "x", "y", "s")],
    )
    segs, dropped = A.segment_items(A.read_item_file(p), {"f": np.ones((50, 3))}, 0.01)
    assert [s.frames.shape for s in segs] == [(4, 3)] and [d.line for d in dropped] == [3]
    with pytest.raises(A.ABXError, match=r"i\.item:2: no features for file 'f'"):
        A.segment_items(A.read_item_file(p), {}, 0.01, where=str(p))


# --------------------------------------------------------------------------------------------- distances


def test_angular_distance_values():
    x = np.array(
        [[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, 0.0], [math.cos(math.pi / 3), math.sin(math.pi / 3)]]
    )
    d = A.frame_distances(x, x, "cosine")
    expect = np.array(
        [
            [0, 0.5, 1, 1, 1 / 3],
            [0.5, 0, 0.5, 1, 1 / 6],
            [1, 0.5, 0, 1, 2 / 3],
            [1, 1, 1, 0, 1],  # a zero frame: 1 from any other frame, 0 from a zero frame
            [1 / 3, 1 / 6, 2 / 3, 1, 0],
        ]
    )
    np.testing.assert_allclose(d, expect, atol=1e-7)
    assert d[0, 0] == 0.0 and np.all(np.diag(d) == 0.0)
    np.testing.assert_allclose(A.frame_distances([[2.0, 0.0]], [[5.0, 0.0]], "cosine"), [[0.0]])


def test_kl_distance_values():
    p, q = np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]])
    e = A.KL_EPS
    kl_pq = 0.5 * math.log((0.5 + e) / (0.9 + e)) + 0.5 * math.log((0.5 + e) / (0.1 + e))
    kl_qp = 0.9 * math.log((0.9 + e) / (0.5 + e)) + 0.1 * math.log((0.1 + e) / (0.5 + e))
    d = A.frame_distances(p, q, "kl")
    assert d[0, 0] == pytest.approx(0.5 * kl_pq + 0.5 * kl_qp, rel=1e-12)
    assert A.frame_distances(q, p, "kl")[0, 0] == pytest.approx(d[0, 0], rel=1e-12)
    assert A.frame_distances(p, p, "kl")[0, 0] == pytest.approx(0.0, abs=1e-15)
    # frames are renormalised to sum 1 first: scaled posteriorgrams give the same distance
    assert A.frame_distances(p * 4, q * 0.5, "kl")[0, 0] == pytest.approx(d[0, 0], rel=1e-12)


def test_code_identity_distance():
    x = np.array([[1, 2, 3], [1, 2, 4], [7, 8, 9]])
    d = A.frame_distances(x, x, "codes")
    np.testing.assert_array_equal(d * 3, [[0, 1, 3], [1, 0, 3], [3, 3, 0]])  # fraction of differing layers
    np.testing.assert_array_equal(
        A.frame_distances(np.array([3, 4, 3]), np.array([3, 5]), "codes"), [[0, 1], [1, 1], [0, 1]]
    )


# --------------------------------------------------------------------------------------------- DTW


def test_dtw_hand_checked():
    # 1 x 3: the only path has 3 cells, cost 1 + 2 + 3
    assert A.dtw(np.array([[1.0, 2.0, 3.0]])) == pytest.approx(2.0)
    # 2 x 2 with a free diagonal: cost 0
    assert A.dtw(np.array([[0.0, 1.0], [1.0, 0.0]])) == 0.0
    # 2 x 3: accumulated costs [[0, 1, 3], [1, 0, 1]]; path (0,0) (1,1) (1,2): cost 1 over 3 cells
    assert A.dtw(np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0]])) == pytest.approx(1 / 3)
    # 4 x 3, accumulated costs [[1,2,3],[2,2,3],[2,3,2],[3,2,3]], total 3. Backtracking from (3,2):
    # diagonal 3 > left 2 == up 2, ties go to (i, j-1): (3,1); then diagonal (2,0); then down column 0 to
    # (0,0): 5 cells -> 3/5. The transposed problem resolves the tie the other way: (2,2), (1,1), (0,0):
    # 4 cells -> 3/4 (ABXpy/Libri-Light behave the same way; the distance is not symmetric on ties).
    d = np.array([[1, 1, 1], [1, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=float)
    assert A.dtw(d) == pytest.approx(0.6)
    assert A.dtw(d.T) == pytest.approx(0.75)
    fwd, rev = A.dtw_batch(d[None], [4], [3], both=True)
    assert fwd[0] == pytest.approx(0.6) and rev[0] == pytest.approx(0.75)


def test_dtw_batch_padding_does_not_matter():
    rng = np.random.default_rng(0)
    mats = [rng.random((rng.integers(1, 9), rng.integers(1, 9))) for _ in range(40)]
    pad = np.full((40, 8, 8), 1e6)
    for k, m in enumerate(mats):
        pad[k, : m.shape[0], : m.shape[1]] = m
    out = A.dtw_batch(pad, [m.shape[0] for m in mats], [m.shape[1] for m in mats])
    np.testing.assert_array_equal(out, [A.dtw(m) for m in mats])
    with pytest.raises(ValueError):
        A.dtw_batch(pad, [0] * 40, [1] * 40)


def test_dtw_minimises_over_all_paths():
    """The total cost equals a brute-force minimum over every monotone path (small matrices)."""
    rng = np.random.default_rng(1)

    def paths(i, j):
        if i == 0 and j == 0:
            yield [(0, 0)]
            return
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            if i - di >= 0 and j - dj >= 0:
                for p in paths(i - di, j - dj):
                    yield [*p, (i, j)]

    for _ in range(20):
        n, m = rng.integers(1, 5, 2)
        d = rng.random((n, m))
        best = min(sum(d[c] for c in p) for p in paths(n - 1, m - 1))
        costs = A._dtw_costs(d[None])
        assert costs[0, n, m] == pytest.approx(best)


# ------------------------------------------------------------------------------------ ABX known answers


def _two_by_two(frames_of) -> list[A.Segment]:
    """2 speakers x 2 phones x 2 items, one context; ``frames_of(speaker, phone, k)`` gives the frames."""
    return [_seg(frames_of(s, p, k), p, s) for s in ("s1", "s2") for p in ("a", "b") for k in range(2)]


def test_a_equals_x_gives_zero_error():
    # every item of a phone is the same sequence: d(A, X) = 0 < d(B, X)
    segs = _two_by_two(lambda s, p, k: _angle(0 if p == "a" else 70, 3))
    res = A.score_segments(segs)
    assert res["within"]["error"] == 0.0 and res["across"]["error"] == 0.0
    assert res["within"]["triplets"] == 2 * 2 * (2 * 1 * 2)  # speakers x ordered pairs x (X, A != X, B)
    assert res["across"]["triplets"] == 2 * 2 * (2 * 2 * 2)  # speaker pairs x ordered pairs x (X, A, B)


def test_all_ties_give_fifty_percent():
    segs = _two_by_two(lambda s, p, k: _angle(30, 2))
    res = A.score_segments(segs)
    assert res["within"]["error"] == 50.0 and res["across"]["error"] == 50.0


def test_b_equals_x_gives_hundred_percent():
    # across: speaker s2's "a" items are exactly speaker s1's "b" items, while s1's "a" items are far away.
    # With A/B from s1 and X from s2: d(B, X) = 0 < d(A, X) -> error 100 for the cells (s1 -> s2, a, b).
    frames = {("s1", "a"): 0, ("s1", "b"): 80, ("s2", "a"): 80, ("s2", "b"): 160}
    segs = _two_by_two(lambda s, p, k: _angle(frames[(s, p)], 2))
    res = A.score_segments(segs, modes=("across",))
    # (a, b): s1 -> s2 error 100; s2 -> s1 (A 80, B 160, X 0 degrees) error 0
    assert res["across"]["phone_pairs"]["a|b"]["error"] == 50.0
    seg1 = [s for s in segs if s.speaker == "s1"] + [s for s in segs if s.speaker == "s2" and s.phone == "a"]
    res = A.score_segments(seg1, modes=("across",))  # only s1 has both phones: only s1 -> s2 cells
    assert res["across"]["error"] == 100.0 and res["across"]["phone_pairs"]["a|b"]["error"] == 100.0
    assert res["across"]["cells"] == 1  # (a, b) only: s2 has no "b" item to be X of phone b


def test_within_b_closer_than_other_a():
    # within: a-items at 0 and 90 degrees, b-items at 45: every B is closer to X than the other A -> 100 for
    # (a, b); for (b, a) the b-items are identical -> 0; mean 50
    angle = {("a", 0): 0, ("a", 1): 90, ("b", 0): 45, ("b", 1): 45}
    segs = [_seg(_angle(angle[(p, k)], 2), p, "s1") for p in "ab" for k in range(2)]
    res = A.score_segments(segs, modes=("within",))
    pairs = res["within"]["phone_pairs"]
    assert pairs["a|b"]["error"] == 100.0 and pairs["b|a"]["error"] == 0.0 and res["within"]["error"] == 50.0
    assert A.score_segments(segs, modes=("across",))["across"] is None  # one speaker: no across triplet


def test_codes_distance_abx():
    codes = {"a": [[1, 5], [1, 5], [2, 5]], "b": [[3, 6], [3, 7], [3, 7]]}
    segs = [
        A.Segment(np.array(codes[p]), p, ("x", "y"), s) for s in ("s1", "s2") for p in "ab" for _ in range(2)
    ]
    res = A.score_segments(segs, distance="codes")
    assert res["within"]["error"] == 0.0 and res["across"]["error"] == 0.0
    # multi-layer: B differs from X in one layer of two (0.5 per frame), A equals X -> still 0; if A
    # differs in both layers of every frame it loses to B -> 100 for that pair
    one = [
        A.Segment(np.array([[1, 5]]), "a", ("x", "y"), "s1"),
        A.Segment(np.array([[1, 5]]), "a", ("x", "y"), "s1"),
    ]
    one += [A.Segment(np.array([[1, 6]]), "b", ("x", "y"), "s1")]
    assert (
        A.score_segments(one, distance="codes", modes=("within",))["within"]["phone_pairs"]["a|b"]["error"]
        == 0.0
    )
    one[1].frames = np.array([[2, 6]])
    assert (
        A.score_segments(one, distance="codes", modes=("within",))["within"]["phone_pairs"]["a|b"]["error"]
        == 100.0
    )


def test_dtw_over_different_lengths():
    # the same trajectory at two speeds is closer than another trajectory at the same speed
    slow = np.concatenate([_angle(0, 4), _angle(40, 4), _angle(80, 4)])
    fast = np.concatenate([_angle(0, 1), _angle(40, 2), _angle(80, 1)])
    other = np.concatenate([_angle(80, 4), _angle(40, 4), _angle(0, 4)])
    segs = [_seg(slow, "a", "s1"), _seg(other, "b", "s1"), _seg(fast, "a", "s2"), _seg(other, "b", "s2")]
    res = A.score_segments(segs, modes=("across",))
    assert res["across"]["phone_pairs"]["a|b"]["error"] == 0.0


def test_averaging_orders_on_an_unbalanced_design():
    """Across cells (context, speaker A/B, speaker X, a, b) with scores chosen by hand: the ZeroSpeech
    2019 order (contexts, then speaker pairs) and the Libri-Light order ((context, X speaker), then A/B
    speakers) weigh them differently."""
    cells = [("c1", "s1", "s2", "a", "b"), ("c1", "s1", "s3", "a", "b"), ("c2", "s1", "s2", "a", "b")]
    scores = [(1.0, 4), (1.0, 4), (0.0, 4)]
    zs = A._average(cells, scores, [(1, 2, 3, 4), (3, 4)])
    ll = A._average(cells, scores, [(1, 3, 4), (3, 4)])
    assert zs["error"] == pytest.approx(100 * (1 - (0.5 + 1.0) / 2))  # (s1,s2): mean(1, 0); (s1,s3): 1
    assert ll["error"] == pytest.approx(100 * (1 - 2 / 3))  # s1: mean over the three (context, X) cells
    assert zs["triplets"] == 12 and zs["cells"] == 3
    # within: contexts -> speakers -> pairs
    w = A._average(
        [("c1", "s1", "a", "b"), ("c2", "s1", "a", "b"), ("c1", "s2", "a", "b"), ("c1", "s2", "b", "a")],
        [(1.0, 2), (0.0, 2), (1.0, 2), (0.5, 2)],
        [(1, 2, 3), (2, 3)],
    )
    assert w["phone_pairs"]["a|b"]["error"] == pytest.approx(100 * (1 - (0.5 + 1.0) / 2))
    assert w["error"] == pytest.approx(100 * (1 - (0.75 + 0.5) / 2))


def test_subsampling_is_seeded():
    rng = np.random.default_rng(0)
    segs = [_seg(rng.normal(size=(3, 4)), p, s) for s in ("s1", "s2", "s3") for p in "abc" for _ in range(5)]
    full = A.score_segments(segs)
    a = A.score_segments(segs, max_size_group=3, max_x_across=1, seed=1)
    b = A.score_segments(segs, max_size_group=3, max_x_across=1, seed=1)
    assert a == b and a["across"]["triplets"] < full["across"]["triplets"]
    with pytest.raises(A.ABXError, match="max_size_group"):
        A.score_segments(segs, max_size_group=0)


def test_score_segments_rejects_bad_options():
    segs = _two_by_two(lambda s, p, k: _angle(0, 1))
    for kwargs, msg in (
        ({"distance": "l2"}, "unknown distance"),
        ({"modes": ("sideways",)}, "unknown ABX mode"),
        ({"averaging": "mean"}, "unknown averaging"),
    ):
        with pytest.raises(A.ABXError, match=msg):
            A.score_segments(segs, **kwargs)
    with pytest.raises(A.ABXError, match="no items"):
        A.score_segments([])


# -------------------------------------------------------------------------------------- feature folders


def _toy_corpus(tmp_path, fmt=".npy"):
    """4 files (2 speakers), each 60 frames x 3 dims: phone a = direction e0, phone b = direction e1."""
    feats = tmp_path / "feats"
    feats.mkdir()
    rows = []
    for s in ("s1", "s2"):
        for f in range(2):
            fid = f"{s}_{f}"
            x = np.zeros((60, 3), dtype=np.float32)
            x[:30, 0] = 1 + f
            x[30:, 1] = 2 + f
            x[:, 2] = 0.1
            if fmt == ".npy":
                np.save(feats / f"{fid}.npy", x)
            else:
                np.savetxt(feats / f"{fid}.txt", x, fmt="%.16f")
            rows += [(fid, 0.02, 0.12, "a", "#", "#", s), (fid, 0.32, 0.5, "b", "#", "#", s)]
    return _write_items(tmp_path / "toy.item", rows), feats


@pytest.mark.parametrize("fmt", [".npy", ".txt"])
def test_feature_folder_abx(tmp_path, fmt):
    item, feats = _toy_corpus(tmp_path, fmt)
    items = A.read_item_file(item)
    loaded, paths = F.load_feature_dir(feats, items, None, item)
    assert set(loaded) == {"s1_0", "s1_1", "s2_0", "s2_1"} and loaded["s1_0"].shape == (60, 3)
    res = A.abx(item, loaded, shift=0.01, items=items)
    assert res["within"]["error"] == 0.0 and res["across"]["error"] == 0.0
    assert res["items_used"] == 8 and res["items_dropped"] == 0


def test_feature_folder_errors(tmp_path):
    item, feats = _toy_corpus(tmp_path)
    items = A.read_item_file(item)
    (feats / "s2_1.npy").unlink()
    with pytest.raises(A.ABXError, match=r"toy\.item:8: no feature file for 's2_1'"):
        F.load_feature_dir(feats, items, ".npy", item)
    np.save(feats / "s2_1.npy", np.zeros((5, 4, 2)))
    with pytest.raises(A.ABXError, match=r"s2_1\.npy: want a \(frames, dims\) matrix"):
        F.load_feature_dir(feats, items, ".npy", item)
    np.save(feats / "s2_1.npy", np.full((5, 3), np.nan))
    with pytest.raises(A.ABXError, match="NaN/inf"):
        F.load_feature_dir(feats, items, ".npy", item)
    (feats / "s2_1.npy").write_bytes(b"not numpy")
    with pytest.raises(A.ABXError, match=r"s2_1\.npy: cannot read the features"):
        F.load_feature_dir(feats, items, ".npy", item)
    np.save(feats / "s2_1.npy", np.ones((60, 4)))
    loaded, paths = F.load_feature_dir(feats, items, ".npy", item)
    with pytest.raises(A.ABXError, match="4 feature dims, but .* has 3"):
        F.check_for_distance(loaded, paths, "cosine")
    (feats / "sub").mkdir()
    np.save(feats / "sub" / "s2_1.npy", np.ones((60, 3)))
    with pytest.raises(A.ABXError, match="ids must be unique"):
        F.load_feature_dir(feats, items, ".npy", item)
    np.savetxt(feats / "extra.txt", np.ones((2, 2)))
    with pytest.raises(A.ABXError, match="both .npy and .txt"):
        F.load_feature_dir(feats, items, None, item)
    with pytest.raises(A.ABXError, match="feature folder not found"):
        F.load_feature_dir(tmp_path / "nope", items, ".npy", item)


def test_distance_specific_feature_checks():
    with pytest.raises(A.ABXError, match="integer code indices"):
        F.check_for_distance({"f": np.array([[0.5, 1.0]])}, {}, "codes")
    F.check_for_distance({"f": np.array([[2.0, 1.0]])}, {}, "codes")
    with pytest.raises(A.ABXError, match="non-negative"):
        F.check_for_distance({"f": np.array([[-0.5, 1.0]])}, {}, "kl")
    with pytest.raises(A.ABXError, match="positive sum"):
        F.check_for_distance({"f": np.array([[0.0, 0.0]])}, {}, "kl")


# --------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def app():
    """An app with only the abx command (the lead adds it to sqcodec.cli)."""
    from sqcodec import cli_abx

    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # keeps "abx" as a subcommand
        pass

    cli_abx.register(app)
    return app


def _run(app, *args):
    r = CliRunner().invoke(app, ["abx", *map(str, args)])
    return r.exit_code, r.stdout, r.stderr


def test_cli_features_writes_reports(app, tmp_path):
    item, feats = _toy_corpus(tmp_path)
    code, out, err = _run(
        app,
        item,
        "--features",
        feats,
        "--json",
        tmp_path / "r" / "abx.json",
        "--markdown",
        tmp_path / "abx.md",
    )
    assert code == 0, err
    assert "| cosine | 0.00 | 0.00 |" in out
    rep = json.loads((tmp_path / "r" / "abx.json").read_text())
    assert rep["within"]["error"] == 0.0 and rep["across"]["phone_pairs"]["a|b"]["triplets"] > 0
    assert rep["frame_shift"] == 0.01 and rep["selection"] == "libri-light"
    assert "| a | b |" in (tmp_path / "abx.md").read_text()
    code, out, err = _run(app, item, "--features", feats, "--mode", "within", "--frame-shift", "0.02")
    assert code == 0 and "| within |" in out and "across" not in out.splitlines()[0]


@pytest.mark.parametrize(
    "make, args, expect",
    [
        (lambda p, f: p.write_text("f 0 1 a b c s\n"), [], ":1: missing header"),
        (lambda p, f: p.write_text(HEADER + "\nf 0.5 0.1 a b c s\n"), [], ":2: onset 0.5 is not before"),
        (
            lambda p, f: p.write_text(HEADER + "\nnofile 0 0.1 a b c s\n"),
            [],
            ":2: no feature file for 'nofile'",
        ),
        (lambda p, f: None, ["--audio", "x"], "exactly one of --features"),
        (lambda p, f: None, ["--distance", "l2"], "--distance must be one of"),
        (lambda p, f: None, ["--model", "m.pt"], "--model only apply with --audio"),
        (lambda p, f: None, ["--frame-shift", "0"], "--frame-shift must be a positive"),
        (lambda p, f: None, ["--ext", ".csv"], "--ext must be .npy or .txt"),
    ],
)
def test_cli_bad_input_exits_1_with_one_line(app, tmp_path, make, args, expect):
    item, feats = _toy_corpus(tmp_path)
    make(item, feats)
    out_json = tmp_path / "abx.json"
    code, out, err = _run(app, item, "--features", feats, "--json", out_json, *args)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sqcodec: error:") and expect in lines[0], err
    assert not out_json.exists()


def test_cli_no_triplets_fails(app, tmp_path):
    item, feats = _toy_corpus(tmp_path)
    _write_items(item, [("s1_0", 0.02, 0.12, "a", "#", "#", "s1")])
    code, _, err = _run(app, item, "--features", feats)
    assert code == 1 and "no ABX triplet" in err


# --------------------------------------------------------------------------------------- model features

LIBRI = "speech/librispeech/test-other/2033/2033-164914-0000.flac"


@pytest.fixture(scope="module")
def tiny_model_paths(tmp_path_factory):
    """A tiny random codec as an exported folder and as a training checkpoint (codebooks scaled to the
    encoder output so that codes vary), plus a tiny speech-net checkpoint."""
    from sqcodec.codec import Codec, save_codec
    from sqcodec.model import build_model
    from sqcodec.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("abx_models")
    torch.manual_seed(0)
    model = build_model(TINY_CODEC)
    x = torch.randn(1, 80, 200) * 2 - 6
    with torch.no_grad():
        std = float(model.encoder.eval()(x).std())
        for i, cb in enumerate(model.quantizer.codebooks):
            cb.mul_(std * 0.5**i)
    codec = Codec(model, "codec16k", model_id="tiny")
    folder = save_codec(codec, root / "tiny_folder", default_vocoder="griffinlim")
    ckpt = root / "exp" / "checkpoints" / "step_00000001.pt"
    save_checkpoint({"step": 1, "model": model.state_dict(), "config": {"model": TINY_CODEC}}, ckpt)
    speech_cfg = {
        "encoder": {"type": "speech", "channels": 8},
        "decoder": {"type": "speech", "n_speakers": 2, "speaker_dim": 4, "hidden": 8},
        "quantizer": {"type": "gaussian_sq", "dim": 4, "codebook_size": 8, "var_type": "I"},
    }
    speech = build_model(speech_cfg)
    speech_ckpt = root / "speech" / "checkpoints" / "step_00000001.pt"
    save_checkpoint(
        {
            "step": 1,
            "model": speech.state_dict(),
            "config": {"model": speech_cfg, "data": {"preset": "zerospeech"}},
        },
        speech_ckpt,
    )
    return codec, folder, ckpt, speech_ckpt


def test_model_representations(realaudio, tiny_model_paths):
    codec, folder, ckpt, speech_ckpt = tiny_model_paths
    path = realaudio / LIBRI
    wave, sr = sf.read(path, dtype="float32")
    n_frames = codec.preset.num_frames(len(wave))
    n_lat = math.ceil(n_frames / 2)
    cont = F.ModelFeatures(folder, "continuous")
    assert cont.shift == pytest.approx(0.032) and cont.t0 == pytest.approx(
        -0.008
    )  # latent j centred at 8+32j ms
    z = cont(path)
    assert z.shape == (n_lat, 8) and z.dtype == np.float32
    codes = F.ModelFeatures(ckpt, "codes", layers=2)(path)
    # the same codes as `sqcodec encode` (chunked encoder) for the first 2 layers
    ref = codec.encode_wave(wave, layers=2).numpy().T
    np.testing.assert_array_equal(codes, ref)
    assert len(np.unique(codes[:, 0])) > 1
    q = F.ModelFeatures(folder, "quantized", layers=1)(path)
    expect = codec.model.quantizer.codebook(0)[torch.from_numpy(ref[:, 0])].detach().numpy()
    np.testing.assert_allclose(q, expect, rtol=1e-6)
    mel = F.ModelFeatures(None, "mel", preset="codec16k")
    assert mel(path).shape == (n_frames, 80) and mel.shift == 0.016 and mel.t0 == pytest.approx(-0.008)
    sp = F.ModelFeatures(speech_ckpt, "continuous")
    # zerospeech preset (10 ms), input frames T + 2 with T even, latent j centred on frame 2j + 1.5
    assert sp.shift == pytest.approx(0.02) and sp.t0 == pytest.approx(0.005)
    t = (n_frames_zs := (len(wave) // 160 + 1)) - 2
    assert sp(path).shape == ((t - t % 2) // 2, 4), n_frames_zs


def test_model_feature_errors(tiny_model_paths, tmp_path):
    _, folder, ckpt, _ = tiny_model_paths
    with pytest.raises(A.ABXError, match="--layers must be in 1..3"):
        F.ModelFeatures(folder, "codes", layers=4)
    with pytest.raises(A.ABXError, match="--layers applies to"):
        F.ModelFeatures(folder, "continuous", layers=1)
    with pytest.raises(A.ABXError, match="no such model"):
        F.ModelFeatures(tmp_path / "missing.pt", "codes")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(A.ABXError, match="junk.pt"):
        F.ModelFeatures(tmp_path / "junk.pt", "codes")
    with pytest.raises(A.ABXError, match="standardised with training statistics"):
        F.ModelFeatures(None, "mel", preset="vctk")


def test_cli_audio_with_model(app, realaudio, tiny_model_paths, tmp_path):
    """--audio + --model on real recordings: codes with the code-identity distance, and the features
    saved with --save-features score the same through --features."""
    _, folder, _, _ = tiny_model_paths
    src = realaudio / "speech" / "vctk16k"
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = []
    for spk in ("p225", "p226"):
        for num in ("003", "008"):
            (audio / f"{spk}_{num}.flac").symlink_to(src / spk / f"{spk}_{num}.flac")
            for w in range(2):
                for h in range(2):
                    on = 1.0 + w * 1.0 + h * 0.5
                    rows.append((f"{spk}_{num}", on, on + 0.5, f"u{num}", f"w{w}", f"w{w}", spk))
    item = _write_items(tmp_path / "v.item", rows)
    code, out, err = _run(
        app, item, "--audio", audio, "--model", folder, "--representation", "codes", "--layers", "2",
        "--save-features", tmp_path / "saved", "--json", tmp_path / "codes.json",
    )  # fmt: skip
    assert code == 0, err
    rep = json.loads((tmp_path / "codes.json").read_text())
    assert rep["distance"] == "codes" and rep["frame_shift"] == pytest.approx(0.032)
    assert 0.0 <= rep["within"]["error"] <= 100.0 and rep["across"]["triplets"] > 0
    saved = np.load(tmp_path / "saved" / "p225_003.npy")
    assert saved.dtype == np.int64 and saved.shape[1] == 2
    code, out, err = _run(
        app, item, "--features", tmp_path / "saved", "--frame-shift", 0.032, "--frame-offset", -0.008,
        "--distance", "codes", "--json", tmp_path / "again.json",
    )  # fmt: skip
    assert code == 0, err
    again = json.loads((tmp_path / "again.json").read_text())
    assert (
        again["within"]["error"] == rep["within"]["error"]
        and again["across"]["error"] == rep["across"]["error"]
    )
    code, _, err = _run(app, item, "--audio", audio, "--model", tmp_path / "none.pt")
    assert code == 1 and "no such model file or folder" in err
