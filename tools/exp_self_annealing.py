"""Self-annealing study: Gaussian SQ-VAE (I) and RSQ-VAE (L=4) with trainable vs fixed s^2, on real speech.

SQ-VAE Fig. 2 / HQ-VAE Fig. 4 predict that with trainable s^2, s^2 and the mean entropy of P-hat fall as
training goes on, and that on held-out speech the reconstruction error is lower and the perplexity higher
than with s^2 held at its initial value. This script trains the four variants with the real trainer
(``python -m sqcodec.train``, two at a time), evaluates each on the speaker-disjoint held-out list
(deterministic argmax codes), and writes ``results.json``, ``results.md`` and ``curves.png``.

    python tools/exp_self_annealing.py --out exp/selfanneal --steps 4000 [--jobs 2]

Besides the raw s_l^2 it plots a scale-free ratio: s_l^2 / (mean squared encoder output per dimension,
the model's ``z_power`` telemetry). The SQ/RSQ objective is invariant to a common rescaling of the
encoder output, the codebook and s^2 (logits and the continuous term depend only on ||z - b||^2 / s^2,
and the decoder can absorb the scale), so raw s^2 can grow while the quantizer sharpens; the ratio and
the entropy cannot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sqcodec.data import realaudio_root, speech_list

CONFIG = Path(__file__).resolve().parents[1] / "sqcodec" / "configs" / "selfanneal_speech.yaml"

VARIANTS = {
    "sq_trainable": ["model.quantizer={type: gaussian_sq, dim: 64, codebook_size: 256, var_type: I}"],
    "sq_fixed": [
        "model.quantizer={type: gaussian_sq, dim: 64, codebook_size: 256, var_type: I}",
        "model.frozen=[quantizer.log_param_q]",
    ],
    "rsq_trainable": ["model.quantizer={type: residual_sq, dim: 64, codebook_size: 64, num_layers: 4}"],
    "rsq_fixed": [
        "model.quantizer={type: residual_sq, dim: 64, codebook_size: 64, num_layers: 4}",
        "model.frozen=[quantizer.log_param_q]",
    ],
}


def write_lists(out: Path) -> tuple[Path, Path]:
    root = realaudio_root()
    if root is None:
        sys.exit("real-audio folder not found: set SQCODEC_REALAUDIO")
    paths = []
    for split in ("train", "heldout"):
        p = out / f"{split}.txt"
        p.write_text("".join(f"{f}\n" for f in speech_list(split, root)))
        paths.append(p)
    return paths[0], paths[1]


def launch(
    name: str, out: Path, steps: int, train_list: Path, valid_list: Path, seed: int
) -> subprocess.Popen:
    exp = out / name
    args = [
        sys.executable,
        "-m",
        "sqcodec.train",
        "--config",
        str(CONFIG),
        "--out",
        str(exp),
        "--set",
        f"data.train={train_list}",
        "--set",
        f"data.valid={valid_list}",
        "--set",
        f"train.steps={steps}",
        "--set",
        f"train.seed={seed}",
    ]
    for item in VARIANTS[name]:
        args += ["--set", item]
    if (exp / "checkpoints").is_dir():
        args.append("--resume")
    exp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = open(exp / "stdout.log", "a")  # noqa: SIM115 - closed by the OS at exit
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)


@torch.no_grad()
def evaluate(exp: Path, valid_list: Path) -> dict:
    """Held-out log-mel RMSE and corpus-level perplexity per layer count, deterministic codes."""
    from sqcodec.audio.features import PRESETS, wave_to_features
    from sqcodec.train.checkpoint import load_model

    ckpt = exp / "checkpoints"
    last = sorted(ckpt.glob("*.pt"))[-1]
    model, cfg = load_model(last)
    preset = PRESETS[cfg["data"]["preset"]]
    files = [Path(x) for x in valid_list.read_text().split()]
    n_layers = model.quantizer.num_layers
    sse = np.zeros(n_layers)
    count = 0
    counts = None
    for f in files:
        x = torch.from_numpy(wave_to_features(f, preset)).float()[None]
        codes = model.encode(x)
        sizes = model.quantizer.codebook_sizes
        if counts is None:
            counts = [np.zeros(k) for k in sizes]
        for layer in range(n_layers):
            counts[layer] += np.bincount(codes[0, layer].flatten().numpy(), minlength=sizes[layer])
            y = model.decode(codes[:, : layer + 1], length=x.shape[-1])
            sse[layer] += float(((y - x) ** 2).sum())
        count += x.numel()
    perplexity = []
    for c in counts:
        p = c / c.sum()
        p = p[p > 0]
        perplexity.append(float(np.exp(-(p * np.log(p)).sum())))
    return {
        "checkpoint": last.name,
        "rmse_per_layers": [float(math.sqrt(s / count)) for s in sse],
        "perplexity_per_layer": perplexity,
        "variance_per_layer": [float(v) for v in model.quantizer.log_param_q.detach().exp().flatten()],
    }


def read_telemetry(exp: Path) -> tuple[list[dict], list[dict]]:
    train, valid = [], []
    for line in (exp / "train.jsonl").read_text().splitlines():
        rec = json.loads(line)
        (valid if rec.get("split") == "valid" else train).append(rec)
    return train, valid


def plot(out: Path, names: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for name in names:
        train, valid = read_telemetry(out / name)
        steps = [r["step"] for r in train]
        style = "-" if "trainable" in name else "--"
        color = "tab:blue" if name.startswith("sq_") else "tab:red"
        layer_keys = sorted(k for k in train[-1]["stats"] if k.startswith("var_l"))
        for k in layer_keys:
            lw = 2.0 if k == "var_l1" else 0.8
            axes[0, 0].plot(steps, [r["stats"][k] for r in train], style, color=color, lw=lw)
            axes[0, 1].plot(
                steps, [r["stats"][k] / r["stats"]["z_power"] for r in train], style, color=color, lw=lw
            )
            ek = k.replace("var_", "entropy_")
            axes[0, 2].plot(steps, [r["stats"][ek] for r in train], style, color=color, lw=lw)
            pk = k.replace("var_", "perplexity_")
            axes[1, 0].plot(steps, [r["stats"][pk] for r in train], style, color=color, lw=lw)
        axes[1, 1].plot(
            steps, [r["stats"].get("mse", float("nan")) for r in train], style, color=color, label=name
        )
        axes[1, 2].plot(
            [r["step"] for r in valid],
            [r["stats"].get("mse", r.get("loss")) for r in valid],
            style,
            color=color,
            marker="o",
            ms=3,
            label=name,
        )
    titles = [
        "s_l^2 (raw, log)",
        "s_l^2 / mean encoder output power per dim (log)",
        "mean entropy of P-hat (nats)",
        "perplexity per layer (train batch)",
        "train MSE (log-mel)",
        "held-out MSE (deterministic)",
    ]
    for ax, t in zip(axes.flat, titles, strict=True):
        ax.set_title(t)
        ax.set_xlabel("step")
    axes[0, 0].set_yscale("log")
    axes[0, 1].set_yscale("log")
    axes[1, 1].set_yscale("log")
    axes[1, 1].legend()
    axes[1, 2].legend()
    fig.suptitle(
        "Self-annealing on real speech: solid = trainable s^2, dashed = fixed; "
        "blue = SQ-VAE (I), red = RSQ-VAE (L=4, layer 1 thick)"
    )
    fig.tight_layout()
    png = out / "curves.png"
    fig.savefig(png, dpi=90)
    return png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("exp/selfanneal"))
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--eval-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_list, valid_list = write_lists(args.out)
    t0 = time.time()
    if not args.eval_only:
        pending = list(args.variants)
        running: list[tuple[str, subprocess.Popen]] = []
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                running.append((name, launch(name, args.out, args.steps, train_list, valid_list, args.seed)))
            time.sleep(5)
            for name, proc in list(running):
                if proc.poll() is not None:
                    running.remove((name, proc))
                    if proc.returncode != 0:
                        sys.exit(f"{name} failed: see {args.out / name / 'stdout.log'}")
    wall = time.time() - t0
    results = {"steps": args.steps, "seed": args.seed, "wall_s": wall, "variants": {}}
    for name in args.variants:
        results["variants"][name] = evaluate(args.out / name, valid_list)
        train, valid = read_telemetry(args.out / name)
        results["variants"][name]["first_logged"] = train[0]["stats"]
        results["variants"][name]["last_logged"] = train[-1]["stats"]
        results["variants"][name]["valid_curve"] = [(r["step"], r.get("loss")) for r in valid]
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    png = plot(args.out, args.variants)
    rows = [
        "| variant | held-out log-mel RMSE (all layers) | per layer count | perplexity per layer | "
        "s_l^2 at end | mean entropy first -> last logged |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["variants"].items():
        ent = [k for k in r["last_logged"] if k.startswith("entropy_l")]
        ent_s = ", ".join(f"{r['first_logged'][k]:.2f}->{r['last_logged'][k]:.2f}" for k in sorted(ent))
        rows.append(
            f"| {name} | {r['rmse_per_layers'][-1]:.4f} | "
            f"{', '.join(f'{x:.3f}' for x in r['rmse_per_layers'])} | "
            f"{', '.join(f'{x:.1f}' for x in r['perplexity_per_layer'])} | "
            f"{', '.join(f'{x:.3g}' for x in r['variance_per_layer'])} | {ent_s} |"
        )
    (args.out / "results.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"curves: {png}")


if __name__ == "__main__":
    main()
