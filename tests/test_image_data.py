"""Image corpora: readers of the downloaded formats, split files, bad input, the trainer's image batches."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from image_corpora import write_celeba, write_celeba_mask, write_celeba_mask_anno, write_cifar, write_mnist

from sqcodec.data import images as im
from sqcodec.train.config import resolve_config
from sqcodec.train.data import build_data


def test_mnist_idx_gz_and_plain_are_read_and_split(tmp_path):
    for gz in (True, False):
        root = write_mnist(tmp_path / f"m{gz}", n_train=30, n_test=5, gz=gz)
        splits = im.prepare_corpus("mnist", root, n_valid=6, seed=3)
        assert {k: len(v) for k, v in splits.items()} == {"train": 24, "valid": 6, "test": 5}
        assert splits["train"].images.shape[1:] == (28, 28, 1) and splits["train"].images.dtype == np.uint8
    # the split is a partition of the training images, fixed by the seed
    raw = im.read_idx_images(tmp_path / "mFalse" / "train-images-idx3-ubyte")
    both = np.concatenate([splits["train"].images, splits["valid"].images])
    assert sorted(map(bytes, both)) == sorted(map(bytes, raw))


def test_cifar_binary_planes_become_hwc(tmp_path):
    root = write_cifar(tmp_path, per_batch=4)
    rec = (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()[:3073]
    splits = im.prepare_corpus("cifar10", root, n_valid=5)
    assert {k: len(v) for k, v in splits.items()} == {"train": 15, "valid": 5, "test": 4}
    first = splits["test"].images[0]
    assert first.shape == (32, 32, 3)
    assert first[0, 1, 0] == rec[1 + 1] and first[0, 0, 2] == rec[1 + 2048]  # R plane, then B plane


def test_celeba_crop_resize_and_partition(tmp_path):
    splits = im.prepare_corpus("celeba", write_celeba(tmp_path, (3, 2, 1)))
    assert {k: (len(v), v.images.shape[1:]) for k, v in splits.items()} == {
        "train": (3, (64, 64, 3)),
        "valid": (2, (64, 64, 3)),
        "test": (1, (64, 64, 3)),
    }


def test_celeba_mask_label_maps_keep_classes(tmp_path):
    splits = im.prepare_corpus("celeba_mask", write_celeba_mask(tmp_path, (2, 1, 1)))
    tr = splits["train"]
    assert tr.num_classes == 19 and tr.images.shape == (2, 64, 64, 1) and int(tr.images.max()) < 19


def test_celeba_mask_raw_part_masks_are_combined_and_split_by_celeba_partition(tmp_path):
    splits = im.prepare_corpus("celeba_mask", write_celeba_mask_anno(tmp_path))
    assert {k: len(v) for k, v in splits.items()} == {"train": 1, "valid": 1, "test": 1}
    first = splits["train"].images[0, :, :, 0]
    hair, skin = im.MASK_PARTS.index("hair") + 1, im.MASK_PARTS.index("skin") + 1
    assert (first[:32] == hair).all() and (first[32:] == skin).all()  # hair overwrites skin, 64x64
    assert (splits["test"].images == skin).all() and splits["test"].num_classes == 19


def test_digits_ship_with_scikit_learn():
    splits = im.prepare_corpus("digits", None, size=16)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1297, "valid": 250, "test": 250}
    assert splits["test"].images.shape[1:] == (16, 16, 1) and splits["test"].images.max() == 255


def test_split_file_round_trip_and_prepare_writes_all(tmp_path):
    counts = im.prepare("mnist", write_mnist(tmp_path / "db", 24, 4), tmp_path / "data", n_valid=4)
    assert counts == {"train": 20, "valid": 4, "test": 4}
    for s in ("train", "valid", "test"):
        assert len(im.read_split(tmp_path / "data" / f"{s}.npz")) == counts[s]
    assert '"corpus": "mnist"' in (tmp_path / "data" / "prep.json").read_text()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not an IDX image file"),
        (b"\x00\x00\x08\x01" + bytes(12), "not an IDX image file"),
        (
            b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(100),
            "truncated",
        ),
    ],
)
def test_bad_idx_files_are_named_and_nothing_is_written(tmp_path, content, message):
    root = write_mnist(tmp_path / "db", gz=False)
    (root / "t10k-images-idx3-ubyte").write_bytes(content)
    with pytest.raises(im.ImageDataError, match=f"t10k-images-idx3-ubyte: .*{message}"):
        im.prepare("mnist", root, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # all or nothing


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    with pytest.raises(im.ImageDataError, match="no such directory"):
        im.prepare_corpus("mnist", tmp_path / "nope")
    with pytest.raises(im.ImageDataError, match="none of"):
        im.prepare_corpus("cifar10", tmp_path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(gzip.compress(b"not a zip"))
    with pytest.raises(im.ImageDataError, match="bad.npz: unreadable split file"):
        im.read_split(bad)
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 4, 4, 1), np.float32))
    with pytest.raises(im.ImageDataError, match="f.npz: 'images' must be non-empty uint8"):
        im.read_split(tmp_path / "f.npz")
    im.write_split(tmp_path / "m.npz", np.full((1, 4, 4, 1), 20, np.uint8), num_classes=19)
    with pytest.raises(im.ImageDataError, match="m.npz: class index 20 >= num_classes 19"):
        im.read_split(tmp_path / "m.npz")
    broken = write_celeba_mask(tmp_path / "cm", (1, 1, 1))
    (broken / "val_label" / "0.png").write_bytes(b"garbage")
    assert (
        im.main(
            ["prepare", "--corpus", "celeba_mask", "--db_root", str(broken), "--out", str(tmp_path / "o")]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "val_label/0.png: unreadable image" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def _data_cfg(tmp_path, **data):
    raw = {
        "data": {
            "kind": "image",
            "train": str(tmp_path / "train.npz"),
            "valid": str(tmp_path / "valid.npz"),
            **data,
        }
    }
    return resolve_config(raw)["data"]


def test_image_stream_is_a_function_of_seed_and_step(tmp_path):
    rng = np.random.default_rng(0)
    im.write_split(tmp_path / "train.npz", rng.integers(0, 256, (10, 8, 8, 1), np.uint8))
    im.write_split(tmp_path / "valid.npz", rng.integers(0, 256, (5, 8, 8, 1), np.uint8))
    cfg = _data_cfg(tmp_path, valid_batch_size=2)
    a = build_data(cfg, seed=1, batch_size=4, exp_dir=tmp_path / "e1")
    b = build_data(cfg, seed=1, batch_size=4, exp_dir=tmp_path / "e2")
    for step in (0, 2, 7):
        torch.testing.assert_close(a.train.batch(step)["x"], b.train.batch(step)["x"])
    assert a.train.batch(0)["x"].shape == (4, 1, 8, 8) and float(a.train.batch(0)["x"].max()) <= 1.0
    # one epoch (10 images = 2.5 steps of 4) visits every image once
    seen = np.concatenate([a.train.positions(s) for s in range(5)])[:10]
    assert sorted(seen.tolist()) == list(range(10))
    # two ranks at global batch 4 see the same images as one rank
    r0 = build_data(cfg, seed=1, batch_size=2, exp_dir=tmp_path / "e3", rank=0, world_size=2)
    r1 = build_data(cfg, seed=1, batch_size=2, exp_dir=tmp_path / "e4", rank=1, world_size=2)
    both = torch.cat([r0.train.batch(3)["x"], r1.train.batch(3)["x"]])
    torch.testing.assert_close(both, a.train.batch(3)["x"])
    assert [v["x"].shape[0] for v in a.valid.batches] == [2, 2, 1]


def test_onehot_input_for_class_maps(tmp_path):
    im.write_split(tmp_path / "train.npz", np.full((3, 4, 4, 1), 7, np.uint8), num_classes=19)
    im.write_split(tmp_path / "valid.npz", np.zeros((2, 4, 4, 1), np.uint8), num_classes=19)
    data = build_data(_data_cfg(tmp_path, image_input="onehot"), seed=0, batch_size=2, exp_dir=tmp_path / "e")
    x = data.train.batch(0)["x"]
    assert x.shape == (2, 19, 4, 4) and torch.all(x.argmax(1) == 7) and torch.all(x.sum(1) == 1)
    with pytest.raises(im.ImageDataError, match="pixel value 7 >= data.num_classes 5"):
        build_data(
            _data_cfg(tmp_path, image_input="onehot", num_classes=5), seed=0, batch_size=2, exp_dir=tmp_path
        )
