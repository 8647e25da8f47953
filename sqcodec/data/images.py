"""Image corpora for the image recipes: preparation into split files, and the trainer's image batches.

**Split files.** One ``<split>.npz`` per split (``train``, ``valid``, ``test``), read with
``allow_pickle=False``: ``images`` uint8 ``(N, H, W, C)`` and, for class maps (face masks), a scalar
``num_classes``. :func:`write_split` / :func:`read_split` write and check them.

**Preparation** (``python -m sqcodec.data.images prepare --corpus NAME --db_root DIR --out data``), from
the files the download stages fetch (never unpickling anything):

=============== ======================================================================================
mnist,          ``train-images-idx3-ubyte[.gz]`` / ``t10k-images-idx3-ubyte[.gz]`` anywhere below db_root
fashion_mnist   (IDX format); 10,000 random training images become ``valid`` (SQ-VAE App. E.1.1)
cifar10         the *binary* version ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin``; 10,000
                random training images become ``valid``
celeba          ``img_align_celeba/*.jpg`` + ``list_eval_partition.txt`` (0/1/2 = train/valid/test);
                centre crop 140x140, bilinear resize to 64x64 (App. E.1.1); needs Pillow
celeba_mask     CelebAMask-HQ label maps as the SQ-VAE reference code reads them:
                ``{train,val,test}_label/*.png`` with class indices 0..18 (face-parsing output), or
                else the raw ``CelebAMask-HQ-mask-anno/<k>/<idx>_<part>.png`` part masks combined in
                the face_parsing label order and split by ``CelebA-HQ-to-CelebA-mapping.txt`` (the
                CelebA partition of each original index); nearest resize to 64x64 (App. E.3.1)
digits          scikit-learn's 1,797 8x8 handwritten digits (ships with scikit-learn, no download),
                bilinear-upsampled to ``--size``; 250 valid / 250 test (the CPU smoke comparison)
=============== ======================================================================================

**Training batches** (``data.kind: image`` in a training config): ``data.train`` / ``data.valid`` name
split files. ``data.image_input: real`` gives ``x = images / 255`` as ``(B, C, H, W)`` floats;
``onehot`` gives the one-hot class map ``(B, num_classes, H, W)`` of a one-channel image (grey levels as
256 classes, or mask classes), which the categorical reconstruction terms score. Batches are a pure
function of ``(seed, step)`` as for audio (:mod:`sqcodec.train.data`): position ``p`` of the stream is
image ``perm_e[p mod N]`` with ``perm_e`` seeded by ``(seed, e)``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sqcodec.train.data import DataBundle, DataError, ValidSet

CORPORA = ("mnist", "fashion_mnist", "cifar10", "celeba", "celeba_mask", "digits")
SPLITS = ("train", "valid", "test")


class ImageDataError(DataError):
    """An image file or corpus that cannot be used; the message names the file."""


# ----------------------------------------------------------------------------------------- split files
@dataclass
class ImageSplit:
    images: np.ndarray  # uint8 (N, H, W, C)
    num_classes: int | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def write_split(path: str | Path, images: np.ndarray, num_classes: int | None = None) -> Path:
    """Write a split file atomically (a failed write leaves nothing behind)."""
    from sqcodec.fsutil import atomic_write

    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty uint8 (N, H, W, C) array, got {images.dtype} {images.shape}"
        )
    arrays = {"images": images}
    if num_classes is not None:
        arrays["num_classes"] = np.asarray(int(num_classes), np.int64)
    return atomic_write(Path(path), lambda f: np.savez(f, **arrays), parents=True)


def read_split(path: str | Path) -> ImageSplit:
    """Read and check a split file (no pickles)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files:
                raise ImageDataError(f"{path}: not an image split file (no 'images' array)")
            images = z["images"]
            num_classes = int(z["num_classes"]) if "num_classes" in z.files else None
    except ImageDataError:
        raise
    except FileNotFoundError:
        raise ImageDataError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as err:
        raise ImageDataError(f"{path}: unreadable split file ({err})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ImageDataError(
            f"{path}: 'images' must be non-empty uint8 (N, H, W, C), got {images.dtype} {images.shape}"
        )
    if num_classes is not None:
        if images.shape[-1] != 1 or num_classes < 2:
            raise ImageDataError(f"{path}: class maps need one channel and num_classes >= 2")
        if int(images.max()) >= num_classes:
            raise ImageDataError(f"{path}: class index {int(images.max())} >= num_classes {num_classes}")
    return ImageSplit(images, num_classes)


# ----------------------------------------------------------------------------------------- corpus readers
def _find(db_root: Path, names: Sequence[str]) -> Path:
    for name in names:
        hits = sorted(db_root.rglob(name))
        if hits:
            return hits[0]
    raise ImageDataError(
        f"{db_root}: none of {list(names)} found (run the download stage, or check --db_root)"
    )


def read_idx_images(path: Path) -> np.ndarray:
    """MNIST-style IDX image file (optionally gzipped) -> uint8 ``(N, H, W, 1)``."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise ImageDataError(f"{path}: unreadable ({err})") from None
    if len(raw) < 16 or raw[:4] != b"\x00\x00\x08\x03":
        raise ImageDataError(
            f"{path}: not an IDX image file (magic {raw[:4].hex() or 'missing'}, expected 00000803)"
        )
    n, h, w = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    if n == 0 or len(raw) != 16 + n * h * w:
        raise ImageDataError(f"{path}: truncated IDX file ({len(raw) - 16} pixel bytes for {n}x{h}x{w})")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w, 1).copy()


def read_cifar_bin(path: Path) -> np.ndarray:
    """A CIFAR-10 binary batch (records of 1 label byte + 3x32x32 planes) -> uint8 ``(N, 32, 32, 3)``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ImageDataError(f"{path}: unreadable ({err})") from None
    rec = 1 + 3 * 32 * 32
    if not raw or len(raw) % rec:
        raise ImageDataError(
            f"{path}: not a CIFAR-10 binary batch ({len(raw)} bytes, not a multiple of {rec})"
        )
    a = np.frombuffer(raw, np.uint8).reshape(-1, rec)
    if int(a[:, 0].max()) > 9:
        raise ImageDataError(f"{path}: not a CIFAR-10 binary batch (label byte > 9)")
    return a[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImageDataError("this corpus needs Pillow: pip install 'sqcodec[image]'") from None
    return Image


def load_celeba_image(path: Path, crop: int = 140, size: int = 64) -> np.ndarray:
    """Centre crop ``crop`` x ``crop``, bilinear resize to ``size`` (App. E.1.1): ``(size, size, 3)``."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            if w < crop or h < crop:
                raise ImageDataError(f"{path}: {w}x{h} is smaller than the {crop}x{crop} crop")
            left, top = (w - crop) // 2, (h - crop) // 2
            im = im.crop((left, top, left + crop, top + crop)).resize((size, size), Image.BILINEAR)
            return np.asarray(im, np.uint8)
    except ImageDataError:
        raise
    except Exception as err:  # PIL raises many types for corrupt files
        raise ImageDataError(f"{path}: unreadable image ({err})") from None


def load_mask(path: Path, size: int = 64, num_classes: int = 19) -> np.ndarray:
    """A label PNG (class index per pixel) -> nearest-resized ``(size, size, 1)`` uint8."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise ImageDataError(f"{path}: a label map must be a one-channel PNG, got mode {im.mode}")
            a = np.asarray(im.resize((size, size), Image.NEAREST))
    except ImageDataError:
        raise
    except Exception as err:
        raise ImageDataError(f"{path}: unreadable image ({err})") from None
    if a.size and int(a.max()) >= num_classes:
        raise ImageDataError(f"{path}: class index {int(a.max())} >= {num_classes}")
    return a.astype(np.uint8)[..., None]


def _split_off(images: np.ndarray, n_valid: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < n_valid < len(images):
        raise ImageDataError(f"cannot hold out {n_valid} validation images of {len(images)}")
    order = np.random.default_rng(seed).permutation(len(images))
    return images[np.sort(order[n_valid:])], images[np.sort(order[:n_valid])]


def _n_valid(wanted: int, n: int, fraction: int) -> int:
    """``wanted`` held-out images, or ``n / fraction`` of a (``--max_images``-limited) smaller set."""
    return wanted if wanted < n else max(n // fraction, 1)


def _limit(a: np.ndarray, max_images: int) -> np.ndarray:
    return a[:max_images] if max_images > 0 else a


def prepare_corpus(
    corpus: str,
    db_root: Path | None,
    n_valid: int = 10000,
    seed: int = 0,
    max_images: int = 0,
    size: int = 16,
) -> dict[str, ImageSplit]:
    """Read a corpus into ``{"train", "valid", "test"}`` splits (nothing is written here)."""
    if corpus not in CORPORA:
        raise ImageDataError(f"unknown corpus {corpus!r}; choose from {', '.join(CORPORA)}")
    if corpus == "digits":
        return _prepare_digits(size, seed)
    if db_root is None or not Path(db_root).is_dir():
        raise ImageDataError(f"{db_root}: no such directory (--db_root)")
    db_root = Path(db_root)
    if corpus in ("mnist", "fashion_mnist"):
        train = _limit(
            read_idx_images(_find(db_root, ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"])),
            max_images,
        )
        test = _limit(
            read_idx_images(_find(db_root, ["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"])),
            max_images,
        )
        train, valid = _split_off(train, _n_valid(n_valid, len(train), 6), seed)
        return {"train": ImageSplit(train), "valid": ImageSplit(valid), "test": ImageSplit(test)}
    if corpus == "cifar10":
        first = _find(db_root, ["data_batch_1.bin"])
        batches = [first.parent / f"data_batch_{i}.bin" for i in range(1, 6)]
        missing = [str(b) for b in batches + [first.parent / "test_batch.bin"] if not b.is_file()]
        if missing:
            raise ImageDataError(f"{missing[0]}: missing (CIFAR-10 binary version)")
        train = _limit(np.concatenate([read_cifar_bin(b) for b in batches]), max_images)
        test = _limit(read_cifar_bin(first.parent / "test_batch.bin"), max_images)
        train, valid = _split_off(train, _n_valid(n_valid, len(train), 5), seed)
        return {"train": ImageSplit(train), "valid": ImageSplit(valid), "test": ImageSplit(test)}
    if corpus == "celeba":
        return _prepare_celeba(db_root, max_images)
    return _prepare_celeba_mask(db_root, max_images)


def _prepare_celeba(db_root: Path, max_images: int) -> dict[str, ImageSplit]:
    part_file = _find(db_root, ["list_eval_partition.txt", "list_eval_partition.csv"])
    img_dir = _find(db_root, ["img_align_celeba"])
    names: dict[str, list[str]] = {s: [] for s in SPLITS}
    for n, line in enumerate(part_file.read_text().splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields or fields[0] == "image_id":
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ImageDataError(f"{part_file}:{n}: expected '<image> <0|1|2>', got {line!r}")
        names[SPLITS[int(fields[1])]].append(fields[0])
    out = {}
    for split, files in names.items():
        files = _limit(np.asarray(files), max_images)
        if len(files) == 0:
            raise ImageDataError(f"{part_file}: no {split} images listed")
        out[split] = ImageSplit(np.stack([load_celeba_image(img_dir / f) for f in files]))
    return out


#: CelebAMask-HQ part names in the label order of its face_parsing scripts (skin = 1 ... hat = 18,
#: background = 0); later parts overwrite earlier ones where they overlap
MASK_PARTS = (
    "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
#: CelebA's official partition by 0-based original index: train < 162,770 <= valid < 182,637 <= test
CELEBA_VALID_START, CELEBA_TEST_START = 162770, 182637


def combine_mask_parts(anno: Path, idx: int, size: int = 64) -> np.ndarray:
    """Label map of CelebA-HQ image ``idx`` from ``anno/<idx // 2000>/<idx:05d>_<part>.png`` binary part
    masks (absent parts are fine), nearest-resized to ``size``: ``(size, size, 1)`` uint8."""
    Image = _pil()
    label = None
    for cls, part in enumerate(MASK_PARTS, 1):
        f = anno / str(idx // 2000) / f"{idx:05d}_{part}.png"
        if not f.is_file():
            continue
        try:
            with Image.open(f) as im:
                m = np.asarray(im.convert("L")) > 127
        except Exception as err:
            raise ImageDataError(f"{f}: unreadable image ({err})") from None
        if label is None:
            label = np.zeros(m.shape, np.uint8)
        if m.shape != label.shape:
            raise ImageDataError(f"{f}: {m.shape} differs from the other parts' {label.shape}")
        label[m] = cls
    if label is None:
        raise ImageDataError(f"{anno}: no part masks for image {idx} ({idx:05d}_*.png)")
    return np.asarray(Image.fromarray(label).resize((size, size), Image.NEAREST))[..., None]


def _prepare_celeba_mask_anno(db_root: Path, max_images: int) -> dict[str, ImageSplit]:
    """Raw CelebAMask-HQ: part masks + ``CelebA-HQ-to-CelebA-mapping.txt`` (the CelebA partition of each
    image's original index decides its split, as CelebAMask-HQ's face_parsing scripts do)."""
    anno = _find(db_root, ["CelebAMask-HQ-mask-anno"])
    mapping = _find(db_root, ["CelebA-HQ-to-CelebA-mapping.txt"])
    ids: dict[str, list[int]] = {s: [] for s in SPLITS}
    for n, line in enumerate(mapping.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0] == "idx":
            continue
        if len(fields) < 2 or not (fields[0].isdigit() and fields[1].isdigit()):
            raise ImageDataError(f"{mapping}:{n}: expected '<idx> <orig_idx> <orig_file>', got {line!r}")
        orig = int(fields[1])
        split = "train" if orig < CELEBA_VALID_START else "valid" if orig < CELEBA_TEST_START else "test"
        ids[split].append(int(fields[0]))
    out = {}
    for split, idx in ids.items():
        idx = sorted(idx)[:max_images] if max_images > 0 else sorted(idx)
        if not idx:
            raise ImageDataError(f"{mapping}: no {split} images")
        out[split] = ImageSplit(np.stack([combine_mask_parts(anno, i) for i in idx]), num_classes=19)
    return out


def _prepare_celeba_mask(db_root: Path, max_images: int) -> dict[str, ImageSplit]:
    folders = {"train": "train_label", "valid": "val_label", "test": "test_label"}
    if not any(db_root.rglob("train_label")) and any(db_root.rglob("CelebAMask-HQ-mask-anno")):
        return _prepare_celeba_mask_anno(db_root, max_images)
    base = _find(db_root, ["train_label"]).parent
    out = {}
    for split, folder in folders.items():
        d = base / folder
        files = sorted(d.glob("*.png"), key=lambda p: (len(p.stem), p.stem)) if d.is_dir() else []
        if not files:
            raise ImageDataError(
                f"{d}: no label PNGs (expected CelebAMask-HQ {{train,val,test}}_label/*.png)"
            )
        files = files[:max_images] if max_images > 0 else files
        out[split] = ImageSplit(np.stack([load_mask(f) for f in files]), num_classes=19)
    return out


def _prepare_digits(size: int, seed: int) -> dict[str, ImageSplit]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImageDataError("the digits corpus needs scikit-learn: pip install 'sqcodec[image]'") from None
    x = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    order = np.random.default_rng(seed).permutation(len(images))
    idx = {"valid": order[:250], "test": order[250:500], "train": order[500:]}
    return {s: ImageSplit(images[np.sort(idx[s])]) for s in SPLITS}


def prepare(corpus: str, db_root: Path | None, out_dir: Path, **kwargs) -> dict[str, int]:
    """Prepare a corpus and write ``out_dir/{train,valid,test}.npz`` + ``prep.json`` (all or nothing:
    every split is read and checked before the first file is written)."""
    splits = prepare_corpus(corpus, db_root, **kwargs)
    counts = {}
    for name, split in splits.items():
        write_split(Path(out_dir) / f"{name}.npz", split.images, split.num_classes)
        counts[name] = len(split)
    info = {"corpus": corpus, "counts": counts, "shape": list(splits["train"].images.shape[1:])}
    info["num_classes"] = splits["train"].num_classes
    from sqcodec.fsutil import atomic_write

    atomic_write(Path(out_dir) / "prep.json", lambda f: f.write((json.dumps(info, indent=1) + "\n").encode()))
    return counts


# ----------------------------------------------------------------------------------------- training batches
def image_tensor(images: np.ndarray, encoding: str, num_classes: int | None) -> torch.Tensor:
    """uint8 ``(B, H, W, C)`` -> ``(B, C, H, W)`` floats in [0, 1] (``real``) or one-hot ``(B, K, H, W)``."""
    t = torch.from_numpy(np.ascontiguousarray(images))
    if encoding == "real":
        return t.permute(0, 3, 1, 2).float() / 255.0
    k = int(num_classes or 256)
    return torch.nn.functional.one_hot(t[..., 0].long(), k).permute(0, 3, 1, 2).float()


@dataclass
class ImageStream:
    """Deterministic, resumable stream of image batches (the :class:`~sqcodec.train.data.TrainStream`
    contract: ``batch(step)``, ``index``, ``global_batch``)."""

    images: np.ndarray
    encoding: str
    num_classes: int | None
    seed: int
    batch_size: int
    rank: int = 0
    world_size: int = 1
    _perms: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def index(self) -> np.ndarray:
        return np.arange(len(self.images))

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def positions(self, step: int) -> np.ndarray:
        """Image indices of this rank's part of step ``step``."""
        n = len(self.images)
        start = step * self.global_batch + self.rank * self.batch_size
        out = np.empty(self.batch_size, np.int64)
        for j, p in enumerate(range(start, start + self.batch_size)):
            epoch, k = divmod(p, n)
            if epoch not in self._perms:
                if len(self._perms) > 4:
                    self._perms.clear()
                self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(n)
            out[j] = self._perms[epoch][k]
        return out

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        return {"x": image_tensor(self.images[self.positions(step)], self.encoding, self.num_classes)}


def _num_classes(d: dict, split: ImageSplit, path: str) -> int | None:
    if d["image_input"] != "onehot":
        return None
    if split.images.shape[-1] != 1:
        raise ImageDataError(
            f"{path}: image_input onehot needs one-channel images, got {split.images.shape[-1]}"
        )
    k = int(d["num_classes"] or split.num_classes or 256)
    if int(split.images.max()) >= k:
        raise ImageDataError(f"{path}: pixel value {int(split.images.max())} >= data.num_classes {k}")
    return k


def build_image_data(
    d: dict,
    *,
    seed: int,
    batch_size: int,
    exp_dir: Path,
    rank: int = 0,
    world_size: int = 1,
    with_valid: bool = True,
) -> DataBundle:
    """The ``data.kind: image`` counterpart of :func:`sqcodec.train.data.build_data`."""
    for key in ("train", "valid"):
        if d[key] is not None and not isinstance(d[key], (str, Path)):
            raise ImageDataError(f"data.{key} must name one split file (.npz) for data.kind image")
    if d["train"] is None:
        raise ImageDataError("no training data: set data.train to a split file (data/train.npz)")
    train = read_split(d["train"])
    k = _num_classes(d, train, d["train"])
    stream = ImageStream(train.images, d["image_input"], k, seed, batch_size, rank, world_size)
    valid = None
    if with_valid and d["valid"] is not None:
        vs = read_split(d["valid"])
        if vs.images.shape[1:] != train.images.shape[1:]:
            raise ImageDataError(
                f"{d['valid']}: images {vs.images.shape[1:]} differ from training {train.images.shape[1:]}"
            )
        _num_classes(d, vs, d["valid"])
        images = vs.images[: int(d["valid_max"])] if d["valid_max"] else vs.images
        bs = int(d["valid_batch_size"])
        batches = [
            {"x": image_tensor(images[s : s + bs], d["image_input"], k)} for s in range(0, len(images), bs)
        ]
        valid = ValidSet(batches, [f"valid/{i}" for i in range(len(images))])
    if rank == 0:
        from sqcodec.train.checkpoint import atomic_write_text

        atomic_write_text(
            Path(exp_dir) / "data.json",
            json.dumps(
                {"train": str(d["train"]), "valid": str(d["valid"]), "n_train": len(train), "num_classes": k}
            )
            + "\n",
        )
    return DataBundle(
        train=stream,  # type: ignore[arg-type]
        valid=valid,
        speaker_map=None,
        stats=None,
        n_mels=int(train.images.shape[-1]),
        train_uids=[f"train/{i}" for i in range(len(train))],
        dropped=0,
    )


# ----------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sqcodec.data.images", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare", help="corpus -> OUT/{train,valid,test}.npz + prep.json")
    s.add_argument("--corpus", required=True, choices=CORPORA)
    s.add_argument("--db_root", type=Path, default=None, help="the downloaded corpus (not needed for digits)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--n_valid", type=int, default=10000, help="training images held out (MNIST/CIFAR)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max_images", type=int, default=0, help="keep the first N images per split (0 = all)")
    s.add_argument("--size", type=int, default=16, help="digits: image size after upsampling")
    s = sub.add_parser("info", help="print the shape and count of split files")
    s.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "prepare":
            counts = prepare(
                args.corpus,
                args.db_root,
                args.out,
                n_valid=args.n_valid,
                seed=args.seed,
                max_images=args.max_images,
                size=args.size,
            )
            print(" ".join(f"{k}={v}" for k, v in counts.items()))
        else:
            for f in args.files:
                sp = read_split(f)
                print(f"{f}: {len(sp)} images {tuple(sp.images.shape[1:])} num_classes={sp.num_classes}")
    except (ImageDataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
