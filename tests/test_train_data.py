"""Training data: sources, deterministic and rank-consistent batches, crops, padding, speakers, stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train_helpers import make_npy_corpus, tiny_cfg

from sqcodec.train.data import DataError, build_data, resolve_source


def bundle(tmp_path, data_dir, overrides=(), rank=0, world=1, batch=3):
    cfg = tiny_cfg(data_dir, overrides=list(overrides))
    return build_data(
        cfg["data"], seed=7, batch_size=batch, exp_dir=tmp_path / "exp", rank=rank, world_size=world
    )


def test_batches_depend_only_on_seed_and_step(tmp_path):
    data = make_npy_corpus(tmp_path / "d")
    a = bundle(tmp_path, data)
    b = bundle(tmp_path, data)
    for step in (0, 5, 3, 40):  # any order, no replay
        xa, xb = a.train.batch(step), b.train.batch(step)
        assert torch.equal(xa["x"], xb["x"])
    assert a.train.batch(0)["x"].shape == (3, 80, 16)
    assert not torch.equal(a.train.batch(0)["x"], a.train.batch(1)["x"])
    # every epoch visits each training utterance once
    n = len(a.train.index)
    seen = sorted(a.train.item(p)[2] for p in range(n, 2 * n))
    assert seen == sorted(a.train.index.tolist())


def test_ranks_split_the_global_batch(tmp_path):
    data = make_npy_corpus(tmp_path / "d")
    single = bundle(tmp_path, data, batch=4)
    ranks = [bundle(tmp_path, data, rank=r, world=2, batch=2) for r in (0, 1)]
    for step in (0, 3):
        joined = torch.cat([r.train.batch(step)["x"] for r in ranks])
        assert torch.equal(joined, single.train.batch(step)["x"])


def test_crops_are_slices_of_the_utterance(tmp_path):
    data = make_npy_corpus(tmp_path / "d", n=4, lengths=(20, 40))
    b = bundle(tmp_path, data, ["data.valid_holdout=0", "data.crop_pad=2"])
    for p in range(12):
        crop, n, i = b.train.item(p)
        full = b.train.store.get(i)
        assert crop.shape == (80, 18) and n == 18
        starts = [s for s in range(full.shape[1] - 17) if np.array_equal(full[:, s : s + 18], crop)]
        assert starts


def test_short_utterances_dropped_or_padded_with_a_mask(tmp_path):
    data = make_npy_corpus(tmp_path / "d", n=6, lengths=(5, 30), seed=3)
    lengths = sorted(np.load(p).shape[1] for p in data.rglob("*.npy"))
    n_short = sum(t < 20 for t in lengths)
    assert 0 < n_short < 6
    dropped = bundle(tmp_path, data, ["data.valid_holdout=0", "data.crop_frames=20"])
    assert dropped.dropped == n_short and "mask" not in dropped.train.batch(0)
    padded = bundle(tmp_path, data, ["data.valid_holdout=0", "data.crop_frames=20", "data.short=pad"])
    assert padded.dropped == 0
    masks = torch.cat([padded.train.batch(s)["mask"] for s in range(4)])
    xs = torch.cat([padded.train.batch(s)["x"] for s in range(4)])
    assert (~masks).any()
    assert torch.all(xs.transpose(1, 2)[~masks] == 0)
    with pytest.raises(DataError, match="crop"):
        bundle(tmp_path, data, ["data.crop_frames=500"])


def test_speakers_from_parent_dir_and_stats(tmp_path):
    data = make_npy_corpus(tmp_path / "d", speakers=3)
    b = bundle(tmp_path, data, ["data.speakers=parent_dir", "data.stats=auto"])
    assert b.speaker_map == {"spk0": 0, "spk1": 1, "spk2": 2}
    assert json.loads((tmp_path / "exp" / "speakers.json").read_text()) == b.speaker_map
    batch = b.train.batch(0)
    for k in range(3):
        _, _, i = b.train.item(k)
        assert batch["speaker"][k] == b.speaker_map[b.train.store.utts[i].speaker]
    # standardised training frames have ~zero mean / unit std per dimension
    allf = np.concatenate([b.stats.apply(b.train.store.get(int(i))) for i in b.train.index], axis=1)
    np.testing.assert_allclose(allf.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(allf.std(1), 1, atol=1e-3)
    assert (tmp_path / "exp" / "stats.json").is_file()


def test_validation_whole_utterances_trimmed_to_multiple(tmp_path):
    data = make_npy_corpus(tmp_path / "d", n=8)
    b = bundle(tmp_path, data, ["data.valid_holdout=3", "data.valid_multiple=4", "data.crop_pad=2"])
    assert len(b.valid) == 3 and len(b.valid.batches) == 3
    for batch, uid in zip(b.valid.batches, b.valid.uids, strict=True):
        t_full = np.load(data / f"{uid}.npy").shape[1]
        t = batch["x"].shape[-1]
        assert (t - 2) % 4 == 0 and t_full - 4 < t <= t_full
    assert set(b.valid.uids).isdisjoint(b.train_uids)


def test_kaldi_scp_source(tmp_path):
    kaldiio = pytest.importorskip("kaldiio")
    rng = np.random.default_rng(0)
    mats = {f"u{i}": rng.standard_normal((30 + i, 80)).astype(np.float32) for i in range(4)}
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'feats.ark'},{tmp_path / 'feats.scp'}") as w:
        for k, m in mats.items():
            w(k, m)
    (tmp_path / "utt2spk").write_text("".join(f"u{i} s{i % 2}\n" for i in range(4)))
    utts = resolve_source(str(tmp_path / "feats.scp"))
    assert [u.uid for u in utts] == ["u0", "u1", "u2", "u3"]
    cfg = tiny_cfg(tmp_path / "feats.scp", overrides=["data.speakers=utt2spk", "data.valid_holdout=0"])
    b = build_data(cfg["data"], seed=1, batch_size=2, exp_dir=tmp_path / "exp")
    np.testing.assert_array_equal(b.train.store.get(0), mats["u0"].T)  # Kaldi (frames, dims) transposed
    assert b.speaker_map == {"s0": 0, "s1": 1}


def test_audio_source_featurised_once_with_disk_cache(tmp_path, realaudio):
    files = sorted((realaudio / "speech" / "vctk16k").rglob("*.flac"))[:3]
    assert files
    cfg = tiny_cfg(
        [str(f) for f in files], overrides=["data.preset=codec16k", "data.cache=disk", "data.valid_holdout=1"]
    )
    b = build_data(cfg["data"], seed=1, batch_size=2, exp_dir=tmp_path / "exp")
    cached = sorted((tmp_path / "exp" / "feats_cache" / "codec16k").glob("*.npy"))
    assert len(cached) == 3
    from sqcodec.audio.features import wave_to_features

    i = int(b.train.index[0])
    np.testing.assert_array_equal(
        b.train.store.get(i), wave_to_features(b.train.store.utts[i].ref, "codec16k")
    )
    b2 = build_data(cfg["data"], seed=1, batch_size=2, exp_dir=tmp_path / "exp")  # from the cache
    assert torch.equal(b.train.batch(0)["x"], b2.train.batch(0)["x"])


def test_speed_perturbation_adds_resampled_training_copies_only(tmp_path, realaudio):
    """data.speed_perturb [0.9, 1.0, 1.1]: each training utterance also enters at 0.9 and 1.1 (1/f as
    many frames, formants moved by f), the held-out one does not; an unperturbed run is unchanged."""
    files = sorted((realaudio / "speech" / "vctk16k").rglob("*.flac"))[:3]
    base = ["data.preset=codec16k", "data.valid_holdout=1"]

    def data(overrides: list[str], exp: str):
        cfg = tiny_cfg([str(f) for f in files], overrides=overrides)
        return build_data(cfg["data"], seed=1, batch_size=2, exp_dir=tmp_path / exp)

    plain = data(base, "a")
    sp = data([*base, "data.speed_perturb=[0.9, 1.0, 1.1]"], "b")
    store = sp.train.store
    uids = [store.utts[i].uid for i in sp.train.index]
    assert len(uids) == 6 and sorted(u for u in uids if not u.startswith("sp")) == plain.train_uids
    assert sp.valid.uids == plain.valid.uids  # the held-out utterance is never perturbed
    by_uid = {u.uid: i for i, u in enumerate(store.utts)}
    for uid in plain.train_uids:
        n = store.lengths[by_uid[uid]]
        for f in (0.9, 1.1):
            assert abs(store.lengths[by_uid[f"sp{f:g}-{uid}"]] - n / f) <= 2

        # the spectral centroid of the mel frames moves with the speed: higher at 1.1, lower at 0.9
        def centroid(u: str) -> float:
            mag = np.exp(store.get(by_uid[u]))
            return float((mag * np.arange(mag.shape[0])[:, None]).sum() / mag.sum())

        assert centroid(f"sp0.9-{uid}") < centroid(uid) < centroid(f"sp1.1-{uid}")
    assert (tmp_path / "b" / "train_list.txt").read_text().count("sp1.1-") == 2
    with pytest.raises(Exception, match="speed_perturb"):
        tiny_cfg([str(f) for f in files], overrides=[*base, "data.speed_perturb=[3.0]"])
