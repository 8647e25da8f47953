"""Training throughput of the recipes' configs: SQ vs its VQ baseline, RSQ vs RQ, in one process.

Pairs (each SQ model next to its deterministic baseline at the same network, batch and crop):

- ``speech``: ``egs/zerospeech2019/conf/sqvae_gaussian_iv.yaml`` (SQ-VAE speech model: conv encoder,
  Gaussian SQ type IV, K = 512, BiGRU decoder; batch 52 x 32 (+2) frames) vs ``vqvae.yaml``;
- ``urbansound``: ``egs/urbansound8k/conf/rsqvae_l8_shared.yaml`` (multi-scale 2-D conv, RSQ L = 8, K = 8;
  batch 32 x 344 frames) vs ``rqvae_l8.yaml``; ``--us8k-channels`` / ``--us8k-batch`` reduce it on CPU.

One timed step is what the trainer does per iteration: zero_grad, forward (ELBO / VQ loss), backward,
grad-norm clip 1.0, Adam step, on a fixed batch of standard-normal features (the cost does not depend
on the values; speaker ids for the speech decoder). Each repeat runs ``--iters`` steps; the two models
of a pair alternate repeat by repeat. Reported: steps/s and mel frames/s (median), the SQ / baseline
ratio, and on CUDA the peak allocated memory. ``--amp bf16`` runs the step under autocast as the
trainer does on GPU.

    python tools/bench_train_throughput.py --threads 2 --configs speech,urbansound --us8k-channels 128 \\
        --json docs/benchmarks/train_throughput_cpu.json --markdown docs/benchmarks/train_throughput_cpu.md
    python tools/bench_train_throughput.py --smoke --json /tmp/smoke.json        # tiny, for tests
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "numpy", "sqcodec")
PAIRS = {
    "speech": ("egs/zerospeech2019/conf/sqvae_gaussian_iv.yaml", "egs/zerospeech2019/conf/vqvae.yaml"),
    "urbansound": ("egs/urbansound8k/conf/rsqvae_l8_shared.yaml", "egs/urbansound8k/conf/rqvae_l8.yaml"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="speech,urbansound")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--iters", type=int, default=3, help="steps per timed repeat")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--speech-batch", type=int, default=None, help="override the config's batch (52)")
    p.add_argument("--us8k-batch", type=int, default=None, help="override the config's batch (32)")
    p.add_argument("--us8k-channels", type=int, default=None, help="override the network width (128)")
    p.add_argument("--smoke", action="store_true", help="batch 2, narrow nets, 1 repeat of 1 step")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.repeats, args.iters, args.warmup = 1, 1, 0
        args.speech_batch, args.us8k_batch, args.us8k_channels = 2, 2, 8
    args.configs = [c for c in args.configs.split(",") if c]
    for c in args.configs:
        if c not in PAIRS:
            p.error(f"unknown config '{c}' (known: {', '.join(PAIRS)})")
    return args


def setup(path: str, args: argparse.Namespace, torch) -> dict:
    """Model, optimiser, fixed batch and frames per step for one recipe config."""
    import yaml

    from sqcodec.model import build_model

    cfg = yaml.safe_load((REPO / path).read_text())
    model_cfg, data, train = cfg["model"], cfg["data"], cfg["train"]
    batch = int(train["batch_size"])
    if args.smoke and model_cfg["encoder"]["type"] == "speech":
        model_cfg["encoder"]["channels"] = 16
        model_cfg["decoder"]["hidden"] = 8
    if model_cfg["encoder"]["type"] == "speech":
        batch = args.speech_batch or batch
        if model_cfg["decoder"].get("n_speakers") == "auto":
            model_cfg["decoder"]["n_speakers"] = 100
    else:
        batch = args.us8k_batch or batch
        if args.us8k_channels:
            model_cfg["encoder"]["channels"] = model_cfg["decoder"]["channels"] = args.us8k_channels
    device = torch.device(args.device)
    model = build_model(model_cfg).to(device).train()
    opt = torch.optim.Adam(
        model.parameters(), lr=float(cfg["optim"]["lr"]), betas=tuple(cfg["optim"]["betas"])
    )
    frames = int(data["crop_frames"])
    gen = torch.Generator().manual_seed(0)
    shape = (
        (batch, 1, 80, frames)
        if data.get("channel_axis")
        else (batch, 80, frames + 2 * int(data["crop_pad"]))
    )
    inputs = {"x": torch.randn(shape, generator=gen).to(device)}
    if model_cfg["encoder"]["type"] == "speech":
        inputs["speaker"] = torch.randint(0, 100, (batch,), generator=gen).to(device)
    return {
        "config": path,
        "model": model,
        "opt": opt,
        "batch": inputs,
        "batch_size": batch,
        "frames_per_step": batch * frames,
        "quantizer": model_cfg["quantizer"]["type"],
        "params": sum(p.numel() for p in model.parameters()),
        "channels": model_cfg["encoder"].get("channels"),
    }


def step(s: dict, args: argparse.Namespace, torch) -> None:
    s["opt"].zero_grad(set_to_none=True)
    amp = torch.autocast(
        device_type=torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.amp == "bf16"
    )
    with amp:
        out = s["model"](s["batch"])
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(s["model"].parameters(), 1.0)
    s["opt"].step()


def bench_pair(name: str, args: argparse.Namespace, torch) -> list[dict]:
    sq, base = (setup(p, args, torch) for p in PAIRS[name])
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for s in (sq, base):
        for _ in range(args.warmup):
            step(s, args, torch)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            step(s, args, torch)
            sync()
            s["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    times: dict[str, list[float]] = {"sq": [], "base": []}
    for _ in range(args.repeats):
        for key, s in (("sq", sq), ("base", base)):
            sync()
            t0 = time.perf_counter()
            for _ in range(args.iters):
                step(s, args, torch)
            sync()
            times[key].append((time.perf_counter() - t0) / args.iters)
    rows = []
    for key, s in (("sq", sq), ("base", base)):
        med = statistics.median(times[key])
        rows.append(
            {
                "pair": name,
                "role": key,
                "config": s["config"],
                "quantizer": s["quantizer"],
                "batch_size": s["batch_size"],
                "channels": s["channels"],
                "params": s["params"],
                "step_seconds": times[key],
                "steps_per_second": 1.0 / med,
                "frames_per_second": s["frames_per_step"] / med,
                "peak_memory_mib": s.get("peak_mib"),
            }
        )
        print(f"{name:<11s} {s['quantizer']:<12s} {1.0 / med:8.2f} steps/s", flush=True)
    return rows


def markdown(record: dict) -> str:
    rows = [
        "| config | quantizer | batch | width | steps/s | mel frames/s | SQ / baseline | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    res = record["results"]
    for r in res:
        base = next(b for b in res if b["pair"] == r["pair"] and b["role"] == "base")
        ratio = f"{r['steps_per_second'] / base['steps_per_second']:.2f}" if r["role"] == "sq" else "1.00"
        mem = f"{r['peak_memory_mib']:.0f}" if r["peak_memory_mib"] is not None else "-"
        rows.append(
            f"| {r['config']} | {r['quantizer']} | {r['batch_size']} | {r['channels']} | "
            f"{r['steps_per_second']:.2f} | {r['frames_per_second']:,.0f} | {ratio} | {mem} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from sqcodec.eval.provenance import bench_record, set_threads, write_outputs

    set_threads(args.threads)
    import torch

    torch.manual_seed(0)
    record = bench_record("training_throughput", args, PACKAGES, argv, args.device)
    record["results"] = []
    t0 = time.perf_counter()
    for name in args.configs:
        record["results"].extend(bench_pair(name, args, torch))
    record["wall_seconds"] = time.perf_counter() - t0
    write_outputs(record, markdown(record), args.json, args.markdown)
    return record


if __name__ == "__main__":
    main()
