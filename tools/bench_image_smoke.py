"""CPU smoke comparison on a small real image set: Gaussian SQ-VAE (I) vs VQ-VAE with EMA at equal K.

SQ-VAE (ICML 2022, Table 2, Fig. 5) reports lower reconstruction MSE and higher codebook perplexity for
SQ-VAE than for VQ-VAE at the same codebook capacity. This script checks that ordering on scikit-learn's
1,797 real 8x8 handwritten digits (they ship with scikit-learn; bilinear-upsampled to ``--size``), with
the image recipes' parts: ``python -m sqcodec.data.images prepare --corpus digits`` splits (1,297 train /
250 valid / 250 test), the SQ-VAE App. E.1 MNIST ConvResNet (two stride-2 convs, two ResBlocks, d_b = 64),
the real trainer (Adam lr 1e-3 for SQ-VAE, 3e-4 for VQ-VAE as App. E.1.2; batch 32; ``best.pt`` picked
by the validation loss) and :mod:`sqcodec.eval.image_metrics` on the test split (deterministic codes).

Systems: ``sq`` = Gaussian SQ-VAE type I (ARELBO, trainable s^2, init log 10 as the MNIST config);
``vq`` = VQ-VAE, EMA decay 0.99, beta 0.25, fixed decoder variance sigma^2 = ``--vq-sigma2`` (0.01, the
best of the paper's grid for VQ-VAE); ``vq_reset`` = the same with the App. E.1.2 codebook reset.

    OMP_NUM_THREADS=1 python tools/bench_image_smoke.py --threads 1 --steps 3000 --seeds 1,2,3 \\
        --json docs/benchmarks/image_smoke.json --markdown docs/benchmarks/image_smoke.md
    python tools/bench_image_smoke.py --smoke --json /tmp/smoke.json     # tiny setting, for tests
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from sqcodec.eval.provenance import bench_record, set_threads, write_outputs

PACKAGES = ("torch", "numpy", "scikit-learn", "pillow", "sqcodec")

SYSTEMS = ("sq", "vq", "vq_reset")
LABELS = {
    "sq": "Gaussian SQ-VAE (I)",
    "vq": "VQ-VAE (EMA)",
    "vq_reset": "VQ-VAE (EMA + reset)",
}
SMOKE = {"steps": 6, "seeds": [1], "dim": 8, "n_res_block": 1, "val_every": 3}
METRICS = ("mse", "rmse", "ssim", "perplexity_l1")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", default="sq,vq", help=f"subset of {','.join(SYSTEMS)}")
    p.add_argument("--codebook-size", type=int, default=64, help="K")
    p.add_argument("--dim", type=int, default=64, help="code dimension d_b")
    p.add_argument("--n-res-block", type=int, default=2)
    p.add_argument("--size", type=int, default=16, help="digits are upsampled to size x size")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--vq-sigma2", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--work", type=Path, default=None, help="experiment folders (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--render", type=Path, default=None, help="only re-render --markdown from this JSON")
    p.add_argument("--smoke", action="store_true", help="tiny setting (a few steps, d_b = 8), for tests")
    args = p.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    if not args.systems or any(s not in SYSTEMS for s in args.systems):
        p.error(f"--systems must be a subset of {','.join(SYSTEMS)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error("--seeds must be comma-separated integers")
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    return args


def config(args: argparse.Namespace, system: str, seed: int, data: Path) -> dict:
    model = {
        "encoder": {"type": "image", "in_channels": 1, "downsample": 2, "n_res_block": args.n_res_block},
        "decoder": {"type": "image", "out_channels": 1, "upsample": 2, "n_res_block": args.n_res_block},
    }
    if system == "sq":
        q = {"type": "gaussian_sq", "dim": args.dim, "codebook_size": args.codebook_size, "var_type": "I"}
        model["quantizer"] = {**q, "log_var_init": math.log(10.0)}
        model["reconstruction"] = {"type": "arelbo"}
        lr = 1.0e-3
    else:
        q = {"type": "vq", "dim": args.dim, "codebook_size": args.codebook_size, "beta": 0.25, "decay": 0.99}
        model["quantizer"] = {**q, "reset_dead_codes": system == "vq_reset"}
        model["reconstruction"] = {"type": "mse", "sigma2": args.vq_sigma2}
        lr = 3.0e-4
    return {
        "model": model,
        "data": {
            "kind": "image",
            "train": str(data / "train.npz"),
            "valid": str(data / "valid.npz"),
            "valid_batch_size": 250,
        },
        "optim": {"name": "adam", "lr": lr},
        "schedule": {"name": "plateau", "factor": 0.5, "patience": 3},
        "train": {
            "steps": args.steps,
            "batch_size": args.batch,
            "seed": seed,
            "log_every": max(1, min(50, args.steps)),
            "val_every": args.val_every,
            "ckpt_every": args.steps,
            "keep_last": 1,
            "grad_clip": 0,
            "device": "cpu",
            "tensorboard": False,
            "plot": False,
        },
    }


def run_one(args: argparse.Namespace, system: str, seed: int, data: Path, work: Path) -> dict:
    from sqcodec.data.images import read_split
    from sqcodec.eval.image_metrics import evaluate_split
    from sqcodec.train.checkpoint import load_checkpoint, load_model
    from sqcodec.train.trainer import train

    exp = work / f"{system}_s{seed}"
    exp.mkdir(parents=True, exist_ok=True)
    cfg_path = exp / "config_in.yaml"
    cfg = config(args, system, seed, data)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    train(cfg_path, out_dir=exp / "exp")
    seconds = time.perf_counter() - t0
    model, saved = load_model(exp / "exp" / "best.pt")
    res = evaluate_split(model, read_split(data / "test.npz").images, saved["data"], batch_size=250)
    res.pop("_grid")
    last_valid = [json.loads(x) for x in (exp / "exp" / "train.jsonl").read_text().splitlines()]
    last_valid = [r for r in last_valid if r["split"] == "valid"][-1]
    return {
        "system": system,
        "seed": seed,
        "train_seconds": seconds,
        **{m: res[m] for m in METRICS},
        "best_step": int(load_checkpoint(exp / "exp" / "best.pt")["step"]),
        "final_valid_stats": last_valid["stats"],
    }


def summarise(results: list[dict], systems: list[str]) -> list[dict]:
    rows = []
    for s in systems:
        rs = [r for r in results if r["system"] == s]
        row = {"system": s, "label": LABELS[s], "seeds": len(rs)}
        for m in METRICS:
            vals = [r[m] for r in rs]
            row[m] = statistics.fmean(vals)
            row[m + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def markdown(record: dict) -> str:
    a = record["args"]
    lines = [
        f"K = {a['codebook_size']}, d_b = {a['dim']}, {a['size']}x{a['size']} digits, {a['steps']} steps, "
        f"seeds {a['seeds']}; test split (250 images), mean ± std over seeds",
        "",
        "| system | test MSE (x10^3) | RMSE | SSIM | perplexity (of K) |",
        "|---|---|---|---|---|",
    ]
    for r in record["summary"]:
        lines.append(
            f"| {r['label']} | {1e3 * r['mse']:.2f} ± {1e3 * r['mse_std']:.2f} | {r['rmse']:.4f} | "
            f"{r['ssim']:.4f} ± {r['ssim_std']:.4f} | "
            f"{r['perplexity_l1']:.1f} ± {r['perplexity_l1_std']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render is not None:
        record = json.loads(args.render.read_text())
        if args.markdown is not None:
            args.markdown.write_text(markdown(record))
        return record
    import tempfile

    set_threads(args.threads)
    from sqcodec.data.images import prepare

    record = bench_record("image_smoke", args, PACKAGES, None if argv is None else list(argv))
    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_image_")
        work = Path(tmp.name)
    data = work / "data"
    prepare("digits", None, data, size=args.size, seed=0)
    results = []
    try:
        for seed in args.seeds:
            for system in args.systems:
                r = run_one(args, system, seed, data, work)
                print(
                    f"{system} seed {seed}: test mse {r['mse']:.5f} perplexity {r['perplexity_l1']:.1f} "
                    f"({r['train_seconds']:.0f} s)",
                    flush=True,
                )
                results.append(r)
    finally:
        if tmp is not None:
            tmp.cleanup()
    record.update({"results": results, "summary": summarise(results, args.systems)})
    write_outputs(record, markdown(record), args.json, args.markdown)
    return record


if __name__ == "__main__":
    main()
