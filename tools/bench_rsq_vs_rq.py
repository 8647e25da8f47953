"""RSQ-VAE vs RQ-VAE on the UrbanSound8K protocol (HQ-VAE §5.2, Table 2), same data, steps and seeds.

Trains ``egs/urbansound8k/conf/{rqvae_l{4,8},rsqvae_l{4,8}_shared}.yaml`` (K = 8, shared codebook,
the multi-scale 2-D conv network, Adam 1e-3 (0.9, 0.9), ReduceLROnPlateau) with the real trainer, two
runs at a time, each pair being the RQ and RSQ run of one (L, seed) so that both see the same machine
load. Each run is then scored on held-out clips with deterministic codes:

* log-mel RMSE (natural-log mel, not normalised, as the paper) for every layer count 1..L;
* the same with the *training-mode* quantizer (Gumbel-softmax at the final temperature, seeded): the
  soft-vs-hard gap, i.e. how much of the training error the argmax codes at test time lose;
* per-layer codebook perplexity of the held-out codes, per-layer s_l^2 (RSQ) and the last logged mean
  entropy of P-hat;
* a convergence check: the held-out validation MSE over the last tenth of training.

Data: the clips under ``<realaudio>/env/urbansound8k`` (about a hundred, nearly all fold 1), sorted and
split 3:1:1 into train / valid (LR schedule, convergence) / test by position, class-stratified. With a few
minutes of audio instead of 8,732 clips, only orderings and ratios can be compared with the paper.

    python tools/bench_rsq_vs_rq.py --out exp/rsq_rq --steps 3000 --seeds 1,2,3 --layers 8,4 \\
        --channels 32 --batch 16 --crop 88 --jobs 2 --json out.json --markdown out.md

``--merge earlier.json`` adds the runs an earlier result file of this script scored and this one did
not (their checkpoints are gone, or were made elsewhere), as they were recorded, each marked with the
file it came from; the earlier file must have used the same steps, width, batch, crop and overrides.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "egs" / "urbansound8k" / "conf"
PAPER = {"rq": {4: 0.506, 8: 0.497}, "rsq": {4: 0.427, 8: 0.314}}  # HQ-VAE Table 2, RMSE
SAME_SETTINGS = ("steps", "channels", "batch", "crop", "set")  # what runs merged from another file share


def merge_runs(results: dict, earlier: Path) -> None:
    """Add the runs of ``earlier`` (a JSON of this script) that ``results`` lacks, marked as merged."""
    try:
        old = json.loads(earlier.read_text())
        old_settings, old_runs = old["settings"], old["runs"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"error: {earlier}: not a result file of this script ({e})")
    differ = [k for k in SAME_SETTINGS if old_settings.get(k) != results["settings"].get(k)]
    if differ:
        sys.exit(f"error: {earlier}: made with other settings ({', '.join(differ)}); cannot merge its runs")
    for name, run in old_runs.items():
        if name not in results["runs"]:
            results["runs"][name] = {**run, "merged_from": str(earlier)}
    if "unfinished" in results:
        results["unfinished"] = [n for n in results["unfinished"] if n not in results["runs"]]


def clip_lists(out: Path, root: Path | None = None, limit: int | None = None) -> dict[str, Path]:
    """Write train/valid/test lists of the real UrbanSound8K clips (position mod 5: 0 test, 1 valid)."""
    from sqcodec.data import realaudio_root

    root = root or realaudio_root()
    if root is None:
        sys.exit("real-audio folder not found: set SQCODEC_REALAUDIO")
    clips = sorted((root / "env" / "urbansound8k").glob("*/*.flac"))
    clips += sorted((root / "env" / "urbansound8k").glob("*/*.wav"))
    clips = sorted(clips)[:limit] if limit else sorted(clips)
    if len(clips) < 5:
        sys.exit(f"{root / 'env' / 'urbansound8k'}: fewer than 5 clips")
    split = {
        "test": clips[0::5],
        "valid": clips[1::5],
        "train": [c for i, c in enumerate(clips) if i % 5 > 1],
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, files in split.items():
        p = out / f"{name}.txt"
        p.write_text("".join(f"{f}\n" for f in files))
        paths[name] = p
    return paths


def run_name(kind: str, layers: int, seed: int) -> str:
    return f"{kind}_l{layers}_s{seed}"


def launch(
    name: str, kind: str, layers: int, seed: int, args: argparse.Namespace, lists: dict
) -> subprocess.Popen:
    exp = args.out / name
    conf = CONF / (f"rsqvae_l{layers}_shared.yaml" if kind == "rsq" else f"rqvae_l{layers}.yaml")
    sets = [
        f"data.train={lists['train']}",
        f"data.valid={lists['valid']}",
        f"data.crop_frames={args.crop}",
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch}",
        f"train.seed={seed}",
        f"train.val_every={max(1, args.steps // 30)}",
        f"train.log_every={max(1, args.steps // 100)}",
        f"train.ckpt_every={max(1, args.steps // 6)}",
        "train.amp=none",
        f"model.encoder.channels={args.channels}",
        f"model.decoder.channels={args.channels}",
        *args.set,
    ]
    cmd = [sys.executable, "-m", "sqcodec.train", "--config", str(conf), "--out", str(exp)]
    for s in sets:
        cmd += ["--set", s]
    if (exp / "checkpoints").is_dir():
        cmd.append("--resume")
    exp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    log = open(exp / "stdout.log", "a")  # noqa: SIM115 - closed by the OS at exit
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def telemetry(exp: Path) -> tuple[list[dict], list[dict]]:
    train, valid = [], []
    for line in (exp / "train.jsonl").read_text().splitlines():
        rec = json.loads(line)
        (valid if rec.get("split") == "valid" else train).append(rec)
    return train, valid


def validation_curve(valid: list[dict]) -> list[tuple[int, float]]:
    """``(step, held-out MSE)`` of each validation record (its loss where no MSE was logged)."""
    return [(r["step"], r["stats"].get("mse", r.get("loss"))) for r in valid]


def convergence(valid: list[dict], steps: int) -> dict:
    """Held-out MSE at 90 % and at the end of training; 'flat' when it moved by less than 2 %."""
    pts = validation_curve(valid)
    if len(pts) < 2:
        return {"flat": None}
    end = pts[-1]
    ref = min(pts, key=lambda p: abs(p[0] - 0.9 * steps))
    change = (end[1] - ref[1]) / abs(ref[1])
    return {
        "step_90": ref[0],
        "mse_90": ref[1],
        "step_end": end[0],
        "mse_end": end[1],
        "relative_change": change,
        "flat": abs(change) < 0.02,
    }


@torch.no_grad()
def evaluate(exp: Path, test_list: Path, soft_draws: int = 4) -> dict:
    """Deterministic (argmax) and training-mode (Gumbel-softmax, final tau) held-out log-mel RMSE."""
    from sqcodec.audio.features import wave_to_features
    from sqcodec.train.checkpoint import load_checkpoint, load_model

    last = sorted((exp / "checkpoints").glob("*.pt"))[-1]
    model, cfg = load_model(last)
    step = int(load_checkpoint(last).get("step", 0))
    tau = model.set_step(step)
    files = [Path(x) for x in test_list.read_text().split()]
    x = torch.from_numpy(np.stack([wave_to_features(f, cfg["data"]["preset"]) for f in files])).float()[
        :, None
    ]
    q = model.quantizer
    n_layers = q.num_layers
    codes = model.encode(x)
    rmse_hard = []
    for layer in range(1, n_layers + 1):
        y = model.decode(codes[:, :layer], length=x.shape[-1])
        rmse_hard.append(float(torch.sqrt(((y - x) ** 2).mean())))
    perplexity = []
    for layer, k in enumerate(q.codebook_sizes):
        c = np.bincount(codes[:, layer].flatten().numpy(), minlength=k).astype(float)
        p = c[c > 0] / c.sum()
        perplexity.append(float(np.exp(-(p * np.log(p)).sum())))
    # the training-mode forward: only the quantizer switches to training behaviour (sampling)
    gen_state = torch.get_rng_state()
    torch.manual_seed(0)
    model.eval()
    q.train()
    soft = []
    for _ in range(soft_draws):
        out = model({"x": x})
        soft.append(float(torch.sqrt(((out.reconstruction - out.target) ** 2).mean())))
    q.eval()
    torch.set_rng_state(gen_state)
    var = getattr(q, "log_param_q", None)
    return {
        "checkpoint": last.name,
        "step": step,
        "tau": tau,
        "rmse_hard_per_layers": rmse_hard,
        "rmse_soft_all_layers": float(np.mean(soft)),
        "perplexity_per_layer": perplexity,
        "variance_per_layer": [float(v) for v in var.detach().exp().flatten()] if var is not None else None,
        "n_test_clips": len(files),
    }


def summarise(results: dict) -> list[str]:
    rows = [
        "| L | model | seeds | held-out RMSE (argmax codes), mean ± std | training-mode RMSE | "
        "soft-hard gap | mean perplexity per layer (of 8) | converged (flat last tenth) | paper RMSE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layers in sorted({r["layers"] for r in results["runs"].values()}):
        means = {}
        for kind in ("rq", "rsq"):
            runs = [
                r
                for r in results["runs"].values()
                if r["layers"] == layers and r["kind"] == kind and "eval" in r
            ]
            if not runs:
                continue
            hard = np.array([r["eval"]["rmse_hard_per_layers"][-1] for r in runs])
            soft = np.array([r["eval"]["rmse_soft_all_layers"] for r in runs])
            ppl = np.array([np.mean(r["eval"]["perplexity_per_layer"]) for r in runs])
            flat = sum(bool(r["convergence"].get("flat")) for r in runs)
            means[kind] = hard.mean()
            std = hard.std(ddof=1) if len(runs) > 1 else 0.0
            rows.append(
                f"| {layers} | {kind.upper()}-VAE | {len(runs)} | {hard.mean():.4f} ± {std:.4f} | "
                f"{soft.mean():.4f} | {(hard - soft).mean():+.4f} | {ppl.mean():.2f} | {flat}/{len(runs)} | "
                f"{PAPER[kind][layers]:.3f} |"
            )
        if len(means) == 2:
            rows.append(
                f"| {layers} | RSQ / RQ | | {means['rsq'] / means['rq']:.3f} | | | | | "
                f"{PAPER['rsq'][layers] / PAPER['rq'][layers]:.3f} |"
            )
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("exp/rsq_rq"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--layers", default="8,4")
    ap.add_argument("--channels", type=int, default=32, help="encoder/decoder width (paper: 128)")
    ap.add_argument("--batch", type=int, default=16, help="batch size (paper: 32)")
    ap.add_argument("--crop", type=int, default=88, help="training crop in frames (paper: 344, whole clips)")
    ap.add_argument("--kinds", default="rq,rsq", help="which of rq,rsq to train (diagnostic arms: rsq)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="OMP threads per training run")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N clips (smoke tests)")
    ap.add_argument("--set", action="append", default=[], help="extra trainer override for every run")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument(
        "--merge", type=Path, action="append", default=[], help="earlier JSON whose other runs to include"
    )
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    layer_counts = [int(s) for s in args.layers.split(",")]
    lists = clip_lists(args.out, limit=args.limit)
    kinds = args.kinds.split(",")
    jobs = [(kind, layers, seed) for layers in layer_counts for seed in seeds for kind in kinds]
    t0 = time.time()
    walls: dict[str, float] = {}
    if not args.eval_only:
        pending = list(jobs)
        running: list[tuple[str, subprocess.Popen, float]] = []
        while pending or running:
            while pending and len(running) < args.jobs:
                kind, layers, seed = pending.pop(0)
                name = run_name(kind, layers, seed)
                running.append((name, launch(name, kind, layers, seed, args, lists), time.time()))
            time.sleep(2)
            for item in list(running):
                name, proc, started = item
                if proc.poll() is not None:
                    running.remove(item)
                    walls[name] = time.time() - started
                    if proc.returncode != 0:
                        sys.exit(f"{name} failed: see {args.out / name / 'stdout.log'}")
    results: dict = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "command": "python tools/bench_rsq_vs_rq.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": json.loads(json.dumps(vars(args), default=str)),  # paths as strings
        "n_clips": {k: len(v.read_text().split()) for k, v in lists.items()},
        "wall_s": time.time() - t0,
        "paper_rmse": PAPER,
        "runs": {},
    }
    for kind, layers, seed in jobs:
        name = run_name(kind, layers, seed)
        exp = args.out / name
        if not (exp / "checkpoints" / f"step_{args.steps:08d}.pt").is_file():
            results.setdefault("unfinished", []).append(name)  # e.g. a time-boxed --eval-only: left out
            continue
        train, valid = telemetry(exp)
        last = train[-1]["stats"] if train else {}
        results["runs"][name] = {
            "kind": kind,
            "layers": layers,
            "seed": seed,
            "train_wall_s": walls.get(name),
            "eval": evaluate(exp, lists["test"]),
            "convergence": convergence(valid, args.steps),
            "last_logged": {
                k: v for k, v in last.items() if k.startswith(("entropy_l", "perplexity_l", "var_l", "mse"))
            },
            "valid_curve": [(r["step"], r["stats"].get("mse", r.get("loss"))) for r in valid],
        }
    for earlier in args.merge:
        merge_runs(results, earlier)
    rows = summarise(results)
    results["table"] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return results


if __name__ == "__main__":
    main()
