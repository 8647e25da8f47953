"""Streaming feature statistics equal numpy over the concatenation; files round-trip; standardise inverts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sqcodec.audio import (
    FeatureStats,
    compute_stats,
    destandardise,
    load_stats,
    standardise,
    wave_to_features,
)


def _utterances(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # offset 1e4 makes naive sum-of-squares in float32 lose precision; Welford/Chan must not
    return [
        (1e4 + rng.normal(rng.normal(size=(8, 1)), 3.0, size=(8, int(n)))).astype(np.float32)
        for n in rng.integers(1, 60, 25)
    ]


def test_streaming_equals_numpy_over_concatenation() -> None:
    utts = _utterances()
    cat = np.concatenate(utts, axis=1).astype(np.float64)
    st = compute_stats(utts, preset="vctk")
    assert st.count == cat.shape[1] and st.num_utterances == len(utts)
    np.testing.assert_allclose(st.mean, cat.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(st.std, cat.std(axis=1), rtol=1e-9)

    # split over jobs and merged, or fed as a torch batch: same answer
    a, b = compute_stats(utts[:10]), compute_stats(utts[10:])
    merged = FeatureStats().merge(a).merge(b)
    np.testing.assert_allclose(merged.mean, st.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.var, st.var, rtol=1e-9)
    batch = torch.from_numpy(np.stack([u[:, :1] for u in utts]))  # (25, 8, 1)
    one = FeatureStats().update(batch)
    np.testing.assert_allclose(
        one.mean, np.stack([u[:, 0] for u in utts]).astype(np.float64).mean(0), rtol=1e-12
    )


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_load_roundtrip(tmp_path: Path, suffix: str) -> None:
    st = compute_stats(_utterances(1), preset="vctk")
    path = st.save(tmp_path / f"stats{suffix}")
    back = load_stats(path)
    np.testing.assert_array_equal(back.mean, st.mean)
    np.testing.assert_array_equal(back.std, st.std)
    assert (back.count, back.preset, back.n_bins) == (st.count, "vctk", 8)
    assert [p.name for p in tmp_path.iterdir()] == [f"stats{suffix}"]
    (tmp_path / f"bad{suffix}").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read feature stats"):
        load_stats(tmp_path / f"bad{suffix}")


def test_standardise_inverts_and_floors_constant_bins() -> None:
    utts = _utterances(2)
    utts[0][3] = utts[1][3] = 5.0
    st = compute_stats(utts[:2])
    assert st.std[3] == 1.0  # constant bin: not divided by ~0
    x = utts[0]
    z = standardise(x, st)
    assert z.dtype == np.float32
    np.testing.assert_allclose(destandardise(z, st), x, rtol=1e-6)
    cat = np.concatenate(utts[:2], axis=1)
    zc = standardise(cat.astype(np.float64), st)
    np.testing.assert_allclose(zc[[0, 1, 2, 4]].mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(zc[[0, 1, 2, 4]].std(axis=1), 1, atol=1e-9)
    zt = standardise(torch.from_numpy(x), st)
    assert zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-6, atol=1e-6)


def test_vctk_stats_on_real_speech(realaudio: Path) -> None:
    files = sorted((realaudio / "speech/vctk48k").glob("p2*/*.flac"))[:2]
    feats = [wave_to_features(f, "vctk") for f in files]
    st = compute_stats(feats, preset="vctk")
    z = standardise(np.concatenate(feats, axis=1), st)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-4)
