"""Image reconstruction metrics and grids for the image recipes (SQ-VAE Table 2, HQ-VAE Table 1, Fig. 2).

Every test image is encoded with deterministic argmax codes and decoded (:meth:`CodecModel.reconstruct`).

* pixel images (``data.image_input: real``, or 256 grey levels as classes): ``mse`` and ``rmse`` of
  intensities in [0, 1] (mean over pixels and channels, then over images; ``rmse`` = sqrt of the mean
  MSE, as HQ-VAE reports it), ``ssim`` (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 = 0.01,
  K2 = 0.03, data range 1, valid filtering, mean over channels and images), and ``lpips`` (AlexNet,
  Zhang et al. 2018) only when the ``lpips`` package and its pretrained weights are already on this
  machine (nothing is downloaded; otherwise one "skipped: ..." line says what is missing);
* class maps (face masks): pixel ``accuracy`` and ``miou`` (mean IoU over the classes present);
* codebook ``perplexity_l{l}`` per layer: ``exp(H(p))`` of the code histogram over the whole split
  (a corpus-level usage count; the vision reference code averages per-batch values instead).

``python -m sqcodec.eval.image_metrics evaluate --exp EXP --split data/test.npz --out EXP/eval_test``
writes ``metrics.json``, ``metrics.md`` and ``recon.png`` (originals above reconstructions);
``summary --out SUMMARY.md EXP/eval_test ...`` tabulates several systems.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"


# ------------------------------------------------------------------------------------------- metrics
def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    g = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM per image for ``(B, C, H, W)`` images (Gaussian 11x11 window, valid filtering)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    c = x.shape[1]
    size = min(11, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size).to(x.device)[None, None].repeat(c, 1, 1, 1)
    x, y = x.double(), y.double()

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, w, groups=c)

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).float()


def perplexity_of_counts(counts: np.ndarray) -> float:
    p = counts / max(counts.sum(), 1)
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum()))


def lpips_status() -> tuple[bool, str]:
    """Whether LPIPS can run offline here, and a message naming what is missing if not."""
    for pkg in ("lpips", "torchvision"):
        if importlib.util.find_spec(pkg) is None:
            return False, f"skipped: LPIPS needs the '{pkg}' package, which is not installed"
    ckpt = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE
    if not ckpt.is_file():
        return False, f"skipped: LPIPS weights not found at {ckpt} (they are not downloaded at run time)"
    return True, "lpips: AlexNet"


class _Lpips:
    def __init__(self, device: torch.device) -> None:
        import lpips  # noqa: PLC0415 - optional

        self.net = lpips.LPIPS(net="alex", pretrained=True, verbose=False).to(device).eval()

    @torch.no_grad()
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x, y = x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)
        return self.net(x * 2 - 1, y * 2 - 1).reshape(-1)


def _flat_codes(codes: Tensor | list[Tensor]) -> list[Tensor]:
    """Per-layer code tensors from ``(B, L, *S)`` or a list of per-resolution ``(B, n_r, *S_r)``."""
    groups = codes if isinstance(codes, (list, tuple)) else [codes]
    return [g[:, i] for g in groups for i in range(g.shape[1])]


@torch.no_grad()
def evaluate_split(
    model, images: np.ndarray, data_cfg: dict, batch_size: int = 64, device: str = "cpu"
) -> dict:
    """Metrics of ``model`` on uint8 ``(N, H, W, C)`` images (see the module docstring), plus the first
    reconstructions as uint8 for the grid (``"_grid"``: originals, reconstructions)."""
    from sqcodec.data.images import image_tensor

    dev = torch.device(device)
    model = model.to(dev).eval()
    rec_loss = model.reconstruction_loss
    encoding = data_cfg.get("image_input", "real")
    k = int(data_cfg.get("num_classes") or rec_loss.num_classes or 256) if encoding == "onehot" else None
    masks = encoding == "onehot" and k != 256
    sizes = model.quantizer.codebook_sizes
    counts = [np.zeros(s, np.int64) for s in sizes]
    sums: dict[str, float] = {}
    n = 0
    conf = np.zeros((k, k), np.int64) if masks else None
    lp_ok, lp_msg = lpips_status()
    lp = _Lpips(dev) if lp_ok and not masks else None
    grid: tuple[np.ndarray, np.ndarray] | None = None
    for s in range(0, len(images), batch_size):
        chunk = images[s : s + batch_size]
        x = image_tensor(chunk, encoding, k).to(dev)
        codes = model.encode(x)
        for layer, c in enumerate(_flat_codes(codes)):
            counts[layer] += np.bincount(c.reshape(-1).cpu().numpy(), minlength=sizes[layer])
        y = model.decode(codes)
        pred = rec_loss.predict(y)
        b = x.shape[0]
        n += b
        if masks:
            truth = torch.from_numpy(chunk[..., 0].astype(np.int64))
            conf += np.bincount((truth * k + pred.cpu()).reshape(-1).numpy(), minlength=k * k).reshape(k, k)
            recon_u8 = pred.cpu().numpy().astype(np.uint8)[..., None]
        else:
            ref = torch.from_numpy(chunk).permute(0, 3, 1, 2).float().to(dev) / 255.0
            img = pred.float().unsqueeze(1) / 255.0 if encoding == "onehot" else pred.float().clamp(0, 1)
            mse = (img - ref).pow(2).mean(dim=(1, 2, 3))
            sums["mse"] = sums.get("mse", 0.0) + float(mse.sum())
            sums["ssim"] = sums.get("ssim", 0.0) + float(ssim(img, ref).sum())
            if lp is not None:
                sums["lpips"] = sums.get("lpips", 0.0) + float(lp(img, ref).sum())
            if encoding == "onehot":
                sums["accuracy"] = sums.get("accuracy", 0.0) + float(
                    (pred.cpu() == torch.from_numpy(chunk[..., 0])).float().mean((1, 2)).sum()
                )
            recon_u8 = (img * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        if grid is None:
            grid = (chunk, recon_u8)
    out: dict = {"n_images": n}
    out.update({key: v / n for key, v in sums.items()})
    if "mse" in out:
        out["rmse"] = math.sqrt(out["mse"])
    if masks:
        out["accuracy"] = float(np.trace(conf) / conf.sum())
        union = conf.sum(0) + conf.sum(1) - np.diag(conf)
        present = union > 0
        out["miou"] = float((np.diag(conf)[present] / union[present]).mean())
    for layer, c in enumerate(counts):
        out[f"perplexity_l{layer + 1}"] = perplexity_of_counts(c)
    out["lpips_status"] = (
        lp_msg if lp is None and not masks else ("lpips: AlexNet" if lp else "n/a (class maps)")
    )
    out["_grid"] = grid
    return out


# ------------------------------------------------------------------------------------------- grids
def _palette(num_classes: int) -> np.ndarray:
    rng = np.random.default_rng(19)
    pal = rng.integers(0, 256, (num_classes, 3), dtype=np.uint8)
    pal[0] = 0
    return pal


def grid_image(
    originals: np.ndarray, recons: np.ndarray, num_classes: int | None = None, ncol: int = 8
) -> np.ndarray:
    """Originals (upper row of each pair) above reconstructions, ``ncol`` a row: uint8 ``(H', W', 3)``."""

    def rgb(a: np.ndarray) -> np.ndarray:
        if num_classes is not None and num_classes != 256:
            return _palette(num_classes)[a[..., 0]]
        return a.repeat(3, -1) if a.shape[-1] == 1 else a

    o, r = rgb(originals[: ncol * 2]), rgb(recons[: ncol * 2])
    n, h, w, _ = o.shape
    rows = math.ceil(n / ncol)
    pad = 2
    canvas = np.full((rows * 2 * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        row, col = divmod(i, ncol)
        y0, x0 = pad + row * 2 * (h + pad), pad + col * (w + pad)
        canvas[y0 : y0 + h, x0 : x0 + w] = o[i]
        canvas[y0 + h + pad : y0 + 2 * h + pad, x0 : x0 + w] = r[i]
    return canvas


def write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    from sqcodec.fsutil import atomic_write

    atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"), parents=True)


# ------------------------------------------------------------------------------------------- reports
METRIC_ORDER = ("mse", "rmse", "ssim", "lpips", "accuracy", "miou")


def markdown(rows: list[dict]) -> str:
    """A table with one row per system (``name`` + metrics), perplexities per layer last."""
    metrics = [m for m in METRIC_ORDER if any(m in r for r in rows)]
    layers = sorted({k for r in rows for k in r if k.startswith("perplexity_l")}, key=lambda k: int(k[12:]))
    head = ["system", *metrics, *layers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get("name", "?"))]
        for m in metrics + layers:
            v = r.get(m)
            cells.append(
                "-"
                if v is None
                else (
                    f"{v:.5f}" if m in ("mse", "rmse") else f"{v:.4g}" if m.startswith("perp") else f"{v:.4f}"
                )
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate_exp(
    exp: Path,
    split: Path,
    out: Path,
    ckpt: Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    grid: int = 16,
) -> dict:
    from sqcodec.data.images import read_split
    from sqcodec.fsutil import atomic_write
    from sqcodec.train.checkpoint import find_latest, load_model

    if ckpt is None:
        ckpt = exp / "best.pt" if (exp / "best.pt").is_file() else find_latest(exp)
        if ckpt is None:
            raise FileNotFoundError(
                f"{exp}: no checkpoint (best.pt or checkpoints/step_*.pt); run the training stage"
            )
    model, cfg = load_model(ckpt)
    data_cfg = cfg.get("data", {})
    if data_cfg.get("kind") != "image":
        raise ValueError(f"{ckpt}: not an image model (data.kind is {data_cfg.get('kind')!r})")
    sp = read_split(split)
    res = evaluate_split(model, sp.images, data_cfg, batch_size, device)
    originals, recons = res.pop("_grid")
    print(res["lpips_status"])
    res.update({"name": exp.name, "checkpoint": str(ckpt), "split": str(split)})
    if grid > 0:
        ncol = min(8, grid)
        write_png(out / "recon.png", grid_image(originals[:grid], recons[:grid], sp.num_classes, ncol))
    atomic_write(
        out / "metrics.json", lambda f: f.write((json.dumps(res, indent=1) + "\n").encode()), parents=True
    )
    atomic_write(out / "metrics.md", lambda f: f.write(markdown([res]).encode()))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sqcodec.eval.image_metrics", description=__doc__.splitlines()[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("evaluate", help="metrics + reconstruction grid of one trained model on one split")
    s.add_argument("--exp", type=Path, required=True)
    s.add_argument("--split", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--ckpt", type=Path, default=None, help="default: EXP/best.pt, else the newest checkpoint")
    s.add_argument("--batch", type=int, default=64)
    s.add_argument("--device", default="cpu")
    s.add_argument("--grid", type=int, default=16, help="images in recon.png (0: none)")
    s = sub.add_parser("summary", help="one table from several metrics.json folders")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("dirs", nargs="+", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "evaluate":
            res = evaluate_exp(args.exp, args.split, args.out, args.ckpt, args.batch, args.device, args.grid)
            print(markdown([res]), end="")
        else:
            from sqcodec.fsutil import atomic_write

            rows = []
            for d in args.dirs:
                f = d / "metrics.json" if d.is_dir() else d
                try:
                    rows.append(json.loads(f.read_text()))
                except (OSError, ValueError) as err:
                    raise ValueError(f"{f}: unreadable metrics ({err})") from None
            table = markdown(rows)
            atomic_write(args.out, lambda fh: fh.write(table.encode()), parents=True)
            print(table, end="")
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
