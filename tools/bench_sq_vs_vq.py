"""SQ-VAE vs VQ-VAE on speech (SQ-VAE Table 3 / Table 9): Gaussian SQ (I), (III), (IV) vs VQ-VAE with EMA
at its decoder variance sigma^2 in {1e-2, 1e-1, 1, 10}, same network, data, steps and seeds.

Every system trains ``egs/zerospeech2019/conf/sqvae_gaussian_iv.yaml``'s model (the conv encoder, K = 512,
d_b = 64, the BiGRU decoder; SQ-VAE App. E.2.2) with only the quantizer and the reconstruction term
changed: ``gaussian_sq`` type I / III / IV with the ARELBO, or ``vq`` (EMA 0.999, beta 0.25) with
``||x - x_hat||^2 / (2 sigma^2)`` (Eloff et al. 2019, as the paper). Data: the real speech lists of
``sqcodec.data`` (``train`` / the speaker-disjoint ``heldout``), preset ``zerospeech`` (dB/80 + 1), so
the decoder is speaker-independent here (``n_speakers = 0``: the held-out speakers are unseen).
Score: held-out mel MSE in dB^2 (= 6400 x the MSE of the dB/80 + 1 features) with deterministic codes,
and the codebook perplexity; a convergence check as in ``bench_rsq_vs_rq.py``.

    python tools/bench_sq_vs_vq.py --out exp/sq_vq --steps 3000 --seeds 1 --channels 128 --batch 32 \\
        --jobs 2 --json docs/benchmarks/sq_vs_vq_speech.json --markdown docs/benchmarks/sq_vs_vq_speech.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rsq_vs_rq import convergence, telemetry, validation_curve  # noqa: E402

CONF = ROOT / "egs" / "zerospeech2019" / "conf" / "sqvae_gaussian_iv.yaml"
DB2 = 80.0**2  # the zerospeech features are dB / 80 + 1
PAPER_ZEROSPEECH = {  # SQ-VAE Table 9, MSE (dB^2), ZeroSpeech 2019
    "vq_1e-2": 35.20,
    "vq_1e-1": 34.33,
    "vq_1e0": 40.40,
    "vq_1e1": 79.30,
    "sq_I": 33.17,
    "sq_III": 34.35,
    "sq_IV": 32.32,
}


def system_sets(name: str) -> list[str]:
    if name.startswith("sq_"):
        var = name.split("_", 1)[1]
        return [
            f"model.quantizer={{type: gaussian_sq, dim: 64, codebook_size: 512, var_type: {var}}}",
            "model.reconstruction={type: arelbo}",
        ]
    sigma2 = float(name.split("_", 1)[1])
    return [
        "model.quantizer={type: vq, dim: 64, codebook_size: 512, beta: 0.25, decay: 0.999}",
        f"model.reconstruction={{type: mse, sigma2: {sigma2}}}",
    ]


def write_lists(out: Path, limit: int | None) -> dict[str, Path]:
    from sqcodec.data import realaudio_root, speech_list

    root = realaudio_root()
    if root is None:
        sys.exit("real-audio folder not found: set SQCODEC_REALAUDIO")
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "heldout"):
        files = speech_list(split, root)[:limit] if limit else speech_list(split, root)
        paths[split] = out / f"{split}.txt"
        paths[split].write_text("".join(f"{f}\n" for f in files))
    return paths


def launch(name: str, seed: int, args: argparse.Namespace, lists: dict) -> subprocess.Popen:
    exp = args.out / f"{name}_s{seed}"
    sets = [
        f"data.train={lists['train']}",
        f"data.valid={lists['heldout']}",
        "data.speakers=null",
        "model.decoder.n_speakers=0",
        f"model.encoder.channels={args.channels}",
        f"train.steps={args.steps}",
        f"train.batch_size={args.batch}",
        f"train.seed={seed}",
        f"train.val_every={max(1, args.steps // 10)}",
        f"train.log_every={max(1, args.steps // 100)}",
        f"train.ckpt_every={args.steps}",
        "train.amp=none",
        *system_sets(name),
    ]
    cmd = [sys.executable, "-m", "sqcodec.train", "--config", str(CONF), "--out", str(exp)]
    for s in sets:
        cmd += ["--set", s]
    if (exp / "checkpoints").is_dir():
        cmd.append("--resume")
    exp.mkdir(parents=True, exist_ok=True)
    log = open(exp / "stdout.log", "a")  # noqa: SIM115 - closed by the OS at exit
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


@torch.no_grad()
def evaluate(exp: Path, files: list[Path], steps: int) -> dict:
    """Held-out mel MSE (dB^2) with deterministic codes, whole utterances, and the code perplexity."""
    from sqcodec.audio.features import wave_to_features
    from sqcodec.train.checkpoint import load_model

    model, cfg = load_model(exp / "checkpoints" / f"step_{steps:08d}.pt")
    pad = int(cfg["data"]["crop_pad"])
    stochastic = cfg["model"]["quantizer"]["type"] != "vq"
    tau = model.set_step(steps) if stochastic else None
    sse, sse_soft, count, hist = 0.0, 0.0, 0, np.zeros(512)
    gen_state = torch.get_rng_state()
    torch.manual_seed(0)
    for f in files:
        x = torch.from_numpy(wave_to_features(f, cfg["data"]["preset"])).float()[None]
        keep = pad + ((x.shape[-1] - pad) // 2) * 2
        x = x[..., :keep]
        target = model.encoder.target(x)
        y = model.reconstruct(x)
        sse += float(((y - target) ** 2).sum())
        count += target.numel()
        hist += np.bincount(model.encode(x).flatten().numpy(), minlength=512)
        if stochastic:  # the training-mode quantizer (Gumbel-softmax samples at the final tau)
            model.quantizer.train()
            out = model({"x": x})
            model.quantizer.eval()
            sse_soft += float(((out.reconstruction - out.target) ** 2).sum())
    torch.set_rng_state(gen_state)
    p = hist[hist > 0] / hist.sum()
    return {
        "mse_db2": DB2 * sse / count,
        "mse_db2_training_mode": DB2 * sse_soft / count if stochastic else None,
        "tau": tau,
        "perplexity": float(np.exp(-(p * np.log(p)).sum())),
        "files": len(files),
    }


def lowest_validation(valid: list[dict]) -> dict:
    """Where the held-out validation MSE was lowest during training (an overfitting diagnostic only:
    the validation set is the test set here, so this is not a score)."""
    pts = validation_curve(valid)
    if not pts:
        return {}
    step, mse = min(pts, key=lambda p: p[1])
    return {"step": step, "mse_db2": DB2 * mse, "final_mse_db2": DB2 * pts[-1][1]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("exp/sq_vq"))
    ap.add_argument("--systems", default="sq_I,sq_III,sq_IV,vq_1e-2,vq_1e-1,vq_1e0,vq_1e1")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--channels", type=int, default=128, help="encoder width (paper: 768)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (paper: 52)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="first N files of each list (smoke tests)")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args(argv)
    names = [s for s in args.systems.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",")]
    lists = write_lists(args.out, args.limit)
    jobs = [(n, s) for s in seeds for n in names]
    t0 = time.time()
    if not args.eval_only:
        pending, running = list(jobs), []
        while pending or running:
            while pending and len(running) < args.jobs:
                n, s = pending.pop(0)
                running.append((f"{n}_s{s}", launch(n, s, args, lists)))
            time.sleep(2)
            for item in list(running):
                if item[1].poll() is not None:
                    running.remove(item)
                    if item[1].returncode != 0:
                        sys.exit(f"{item[0]} failed: see {args.out / item[0] / 'stdout.log'}")
    files = [Path(x) for x in lists["heldout"].read_text().split()]
    res: dict = {
        "date": datetime.date.today().isoformat(),
        "command": "python tools/bench_sq_vs_vq.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_s": time.time() - t0,
        "paper_zerospeech_mse_db2": PAPER_ZEROSPEECH,
        "runs": {},
    }
    for n, s in jobs:
        exp = args.out / f"{n}_s{s}"
        if not (exp / "checkpoints" / f"step_{args.steps:08d}.pt").is_file():
            res.setdefault("unfinished", []).append(f"{n}_s{s}")
            continue
        _, valid = telemetry(exp)
        res["runs"][f"{n}_s{s}"] = {"system": n, "seed": s, **evaluate(exp, files, args.steps)}
        res["runs"][f"{n}_s{s}"]["convergence"] = convergence(valid, args.steps)
        res["runs"][f"{n}_s{s}"]["lowest_validation"] = lowest_validation(valid)
    rows = [
        "| system | seeds | held-out MSE (dB²), mean ± std | training-mode MSE (dB²) | perplexity (of 512) | "
        "flat last tenth | lowest validation MSE (dB²) at step | paper (ZeroSpeech) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        runs = [r for r in res["runs"].values() if r["system"] == n]
        if not runs:
            continue
        m = np.array([r["mse_db2"] for r in runs])
        std = m.std(ddof=1) if len(m) > 1 else 0.0
        flat = sum(bool(r["convergence"].get("flat")) for r in runs)
        ppl = np.mean([r["perplexity"] for r in runs])
        soft = [r["mse_db2_training_mode"] for r in runs if r.get("mse_db2_training_mode") is not None]
        low = [r["lowest_validation"] for r in runs if r.get("lowest_validation")]
        low_txt = ", ".join(f"{v['mse_db2']:.1f} at {v['step']:,}" for v in low) or "-"
        rows.append(
            f"| {n} | {len(runs)} | {m.mean():.2f} ± {std:.2f} | "
            f"{f'{np.mean(soft):.2f}' if soft else '-'} | {ppl:.1f} | {flat}/{len(runs)} | {low_txt} | "
            f"{PAPER_ZEROSPEECH[n]:.2f} |"
        )
    res["table"] = rows
    for path, text in ((args.json, json.dumps(res, indent=1)), (args.markdown, "\n".join(rows) + "\n")):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    print("\n".join(rows))
    return res


if __name__ == "__main__":
    main()
