"""Tiny synthetic image corpora in the formats the image recipes download (for the tests).

Each writer puts a few random images under ``root`` in the corpus's real on-disk layout (IDX files,
CIFAR-10 binary batches, CelebA JPEGs + partition list, CelebAMask-HQ label PNGs), so that stage 0 of
``recipes/image.sh`` runs its real readers on them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def _idx(path: Path, images: np.ndarray, gz: bool) -> None:
    n, h, w = images.shape
    raw = b"\x00\x00\x08\x03" + b"".join(int(v).to_bytes(4, "big") for v in (n, h, w)) + images.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_mnist(root: Path, n_train: int = 36, n_test: int = 8, gz: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    _idx(root / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_train, 28, 28), np.uint8), gz)
    _idx(root / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_test, 28, 28), np.uint8), gz)
    return root


def write_cifar(root: Path, per_batch: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        recs = np.concatenate(
            [
                rng.integers(0, 10, (per_batch, 1), np.uint8),
                rng.integers(0, 256, (per_batch, 3072), np.uint8),
            ],
            1,
        )
        (d / f"{name}.bin").write_bytes(recs.tobytes())
    return root


def write_celeba(root: Path, counts: tuple[int, int, int] = (12, 4, 4), seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    d = root / "img_align_celeba"
    d.mkdir(parents=True, exist_ok=True)
    lines = []
    i = 0
    for split, n in enumerate(counts):
        for _ in range(n):
            i += 1
            name = f"{i:06d}.jpg"
            Image.fromarray(rng.integers(0, 256, (218, 178, 3), np.uint8)).save(d / name)
            lines.append(f"{name} {split}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def write_celeba_mask(root: Path, counts: tuple[int, int, int] = (10, 3, 3), size: int = 128, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for folder, n in zip(("train_label", "val_label", "test_label"), counts, strict=True):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            blocks = rng.integers(0, 19, (size // 16, size // 16), np.uint8)
            Image.fromarray(np.kron(blocks, np.ones((16, 16), np.uint8))).save(d / f"{i}.png")
    return root


def write_celeba_mask_anno(root: Path, orig: tuple[int, ...] = (5, 170000, 190000), size: int = 32) -> Path:
    """Raw CelebAMask-HQ: part masks of len(orig) images (skin everywhere, hair over the top half of the
    first) and the HQ-to-CelebA mapping with the given original indices."""
    from PIL import Image

    anno = root / "CelebAMask-HQ-mask-anno" / "0"
    anno.mkdir(parents=True, exist_ok=True)
    full = np.full((size, size), 255, np.uint8)
    lines = ["idx orig_idx orig_file"]
    for i, o in enumerate(orig):
        Image.fromarray(full).save(anno / f"{i:05d}_skin.png")
        lines.append(f"{i} {o} {o + 1:06d}.jpg")
    top = np.zeros((size, size), np.uint8)
    top[: size // 2] = 255
    Image.fromarray(top).save(anno / "00000_hair.png")
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(lines) + "\n")
    return root
