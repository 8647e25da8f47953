"""Quantizer throughput: forward + backward vectors/s of our residual quantizers vs vector-quantize-pytorch.

Compares, at equal code dimension d_b, codebook size K and number of layers L, on the same input:

- ``rsq``: our :class:`sqcodec.quantize.ResidualSQ` in training mode (soft Gumbel mixture per layer,
  no detach, eq. 14 loss),
- ``rvq``: our :class:`sqcodec.quantize.ResidualVQ` in training mode (EMA codebooks, eq. 15 loss),
- ``peer``: ``vector_quantize_pytorch.ResidualVQ`` in training mode (EMA codebooks, decay 0.99,
  commitment weight 0.25, no k-means init, no dead-code expiry, plain straight-through: its default
  rotation trick is switched off unless ``--peer-rotation-trick``), the reference ratio denominator.

One step = forward on a fresh-grad leaf ``z`` (the encoder output stand-in, ``(B, d_b, T)`` for ours and
the same values channel-last ``(B, T, d_b)`` for the peer, ``B*T = --batch-vectors``), a loss
``mean((quantized - target)^2) + latent loss``, and ``backward()``; EMA updates happen inside forward as
in training. No optimizer step. Each timed repeat runs ``--iters`` steps between two
``time.perf_counter()`` calls (``torch.cuda.synchronize()`` before each on GPU); the quantizers are
timed round-robin, repeat by repeat, so that load drift on a shared machine hits all of them alike.
Throughput = vectors per step * iters / median repeat time.

    python tools/bench_quantizer.py --threads 2 --codebook-size 8,512 --layers 4,8 \\
        --batch-vectors 8192 --repeats 5 --json bench.json --markdown bench.md
    python tools/bench_quantizer.py --smoke --json /tmp/smoke.json   # tiny setting, for tests

Writes a JSON record (results plus provenance: date, machine, torch/device, git commit, package
versions, arguments) and a markdown table with the ratios ours / peer (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

QUANTIZERS = ("rsq", "rvq", "peer")
LABELS = {
    "rsq": "ResidualSQ (ours, soft Gumbel)",
    "rvq": "ResidualVQ (ours, EMA)",
    "peer": "vector-quantize-pytorch ResidualVQ (EMA)",
}
SHORT = {"rsq": "ours ResidualSQ", "rvq": "ours ResidualVQ", "peer": "vqp ResidualVQ"}
PACKAGES = ("torch", "numpy", "vector-quantize-pytorch", "einops", "einx", "sqcodec")
SMOKE = {"codebook_size": [8], "layers": [2], "batch_vectors": 256, "repeats": 2, "warmup": 1, "iters": 1}


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=64, help="code dimension d_b")
    p.add_argument("--codebook-size", type=int_list, default=[8, 64, 512], help="K values, e.g. 8,64,512")
    p.add_argument("--layers", type=int_list, default=[4, 8], help="L values, e.g. 4,8")
    p.add_argument("--batch-vectors", type=int, default=8192, help="vectors per step (B*T)")
    p.add_argument("--batch", type=int, default=16, help="B (T = batch-vectors / B); falls back to 1")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps per quantizer")
    p.add_argument("--iters", type=int, default=1, help="steps per timed repeat")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (and OMP_NUM_THREADS)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument("--quantizers", default=",".join(QUANTIZERS), help=f"subset of {','.join(QUANTIZERS)}")
    p.add_argument("--peer-rotation-trick", action="store_true", help="keep the peer's rotation trick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the JSON record here")
    p.add_argument("--markdown", type=Path, default=None, help="write the markdown table here")
    p.add_argument("--render", type=Path, default=None, help="only re-render --markdown from this JSON")
    p.add_argument("--smoke", action="store_true", help="tiny setting: K=8, L=2, 256 vectors, 2 repeats")
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    args.quantizers = [q.strip() for q in args.quantizers.split(",") if q.strip()]
    bad = sorted(set(args.quantizers) - set(QUANTIZERS))
    if bad or not args.quantizers:
        p.error(f"--quantizers: unknown {bad}; choose from {QUANTIZERS}")
    for name in ("dim", "batch_vectors", "batch", "repeats", "iters"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


# -------------------------------------------------------------------------------------------- benchmark


def build(name: str, dim: int, k: int, layers: int, peer_rotation_trick: bool):
    """The quantizer module and a one-step function ``step(z_bdt, z_btd, target_bdt, target_btd)``."""
    import torch

    if name == "rsq":
        from sqcodec.quantize import ResidualSQ

        module = ResidualSQ(dim=dim, codebook_size=k, num_layers=layers)
    elif name == "rvq":
        from sqcodec.quantize import ResidualVQ

        module = ResidualVQ(dim=dim, codebook_size=k, num_layers=layers, beta=0.25, decay=0.99)
    else:
        from vector_quantize_pytorch import ResidualVQ as PeerResidualVQ

        module = PeerResidualVQ(
            dim=dim,
            num_quantizers=layers,
            codebook_size=k,
            decay=0.99,
            commitment_weight=0.25,
            shared_codebook=False,
            kmeans_init=False,
            threshold_ema_dead_code=0,
            rotation_trick=peer_rotation_trick,
        )

    if name == "peer":

        def forward(z_bdt, z_btd, t_bdt, t_btd):
            quantized, _codes, commit = module(z_btd)
            return (quantized - t_btd).pow(2).mean() + commit.sum()
    else:

        def forward(z_bdt, z_btd, t_bdt, t_btd):
            out = module(z_bdt)
            return (out.quantized - t_bdt).pow(2).mean() + out.loss

    def step(z_bdt, z_btd, t_bdt, t_btd) -> None:
        for param in module.parameters():
            param.grad = None
        z_bdt.grad = None
        z_btd.grad = None
        loss = forward(z_bdt, z_btd, t_bdt, t_btd)
        loss.backward()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{name}: non-finite loss {loss.item()}")

    return module, step


def bench_config(
    args: argparse.Namespace, names: list[str], k: int, layers: int, device, torch
) -> list[dict[str, object]]:
    torch.manual_seed(args.seed)
    n = args.batch_vectors
    b = args.batch if n % args.batch == 0 else 1
    t = n // b
    base = torch.randn(b, args.dim, t, device=device)
    target = torch.randn(b, args.dim, t, device=device)
    # the same values for every quantizer: ours take (B, D, T), the peer (B, T, D)
    z_bdt = base.clone().requires_grad_(True)
    z_btd = base.transpose(1, 2).contiguous().requires_grad_(True)
    t_bdt, t_btd = target, target.transpose(1, 2).contiguous()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    steps: dict[str, Callable[..., None]] = {}
    for name in names:
        torch.manual_seed(args.seed + 1)
        module, step = build(name, args.dim, k, layers, args.peer_rotation_trick)
        module.to(device).train()
        steps[name] = step
        for _ in range(args.warmup):
            step(z_bdt, z_btd, t_bdt, t_btd)
        sync()

    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:  # round-robin: load drift hits every quantizer alike
            sync()
            t0 = time.perf_counter()
            for _ in range(args.iters):
                steps[name](z_bdt, z_btd, t_bdt, t_btd)
            sync()
            times[name].append(time.perf_counter() - t0)

    rows = []
    for name in names:
        med = statistics.median(times[name])
        rows.append(
            {
                "quantizer": name,
                "label": LABELS[name],
                "codebook_size": k,
                "layers": layers,
                "dim": args.dim,
                "vectors_per_step": n,
                "input_shape": [b, args.dim, t],
                "iters_per_repeat": args.iters,
                "repeat_seconds": times[name],
                "median_seconds": med,
                "min_seconds": min(times[name]),
                "median_step_ms": 1e3 * med / args.iters,
                "vectors_per_second": n * args.iters / med,
            }
        )
    return rows


def best_rate(r: dict) -> float:
    """Throughput from the fastest repeat: less sensitive to other load on a shared machine."""
    return r["vectors_per_step"] * r["iters_per_repeat"] / min(r["repeat_seconds"])


def ratios(results: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per (K, L): ours / peer throughput (> 1: ours faster), from the medians and from the best repeats."""
    by_cfg: dict[tuple[int, int], dict[str, dict]] = {}
    for r in results:
        by_cfg.setdefault((r["codebook_size"], r["layers"]), {})[r["quantizer"]] = r
    out = []
    for (k, layers), v in sorted(by_cfg.items()):
        row: dict[str, object] = {"codebook_size": k, "layers": layers}
        for ours in ("rsq", "rvq"):
            if ours in v and "peer" in v:
                row[f"{ours}_over_peer"] = v[ours]["vectors_per_second"] / v["peer"]["vectors_per_second"]
                row[f"{ours}_over_peer_best"] = best_rate(v[ours]) / best_rate(v["peer"])
        out.append(row)
    return out


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def markdown(record: dict) -> str:
    args, mach = record["args"], record["machine"]
    names = args["quantizers"]
    rates = {(r["codebook_size"], r["layers"], r["quantizer"]): r for r in record["results"]}
    head = ["K", "L"] + [f"{SHORT[n]} vec/s, median (best)" for n in names]
    ratio_cols = [n for n in ("rsq", "rvq") if n in names and "peer" in names]
    head += [f"{SHORT[n].split()[1]} / vqp, median (best)" for n in ratio_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rat in record["ratios"]:
        k, layers = rat["codebook_size"], rat["layers"]
        cells = [str(k), str(layers)]
        for n in names:
            r = rates.get((k, layers, n))
            cells.append(
                "-" if r is None else f"{fmt_rate(r['vectors_per_second'])} ({fmt_rate(best_rate(r))})"
            )
        cells += [f"{rat[f'{n}_over_peer']:.2f} ({rat[f'{n}_over_peer_best']:.2f})" for n in ratio_cols]
        lines.append("| " + " | ".join(cells) + " |")
    git = record["git"]
    commit = (git["commit"] or "unknown")[:12] + (" (dirty tree)" if git.get("dirty") else "")
    load = mach.get("loadavg_start")
    note = (
        f"d_b = {args['dim']}, {args['batch_vectors']} vectors per step, forward + backward in training "
        f"mode, median of {args['repeats']} repeats x {args['iters']} step(s) after {args['warmup']} "
        f"warm-up step(s). Device: {mach['device']} ({mach['device_name']}), {mach['cpu_count']} CPUs, "
        f"torch {mach['torch']} with {mach['torch_threads']} thread(s); "
        f"vector-quantize-pytorch {record['packages'].get('vector-quantize-pytorch')}; "
        f"commit {commit}; {record['date']}."
    )
    if load:
        note += f" Load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}."
    note += (
        " vqp = vector-quantize-pytorch (EMA, no k-means init, rotation trick "
        + ("on" if args["peer_rotation_trick"] else "off")
        + "). Ratio = ours / vqp throughput (> 1: ours is faster); best = from the fastest repeat."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render is not None:  # re-render a stored record (ratios recomputed from its results)
        record = json.loads(args.render.read_text())
        record["ratios"] = ratios(record["results"])
        table = markdown(record)
        if args.markdown is not None:
            args.markdown.write_text(table)
        print(table)
        return record
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # run from a checkout without an installed sqcodec
    from sqcodec.eval.provenance import git_info, machine_info, package_versions, utc_now

    if args.threads is not None:
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(args.threads)
        except RuntimeError:  # already set in this process (e.g. main() called twice)
            pass
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")

    names = list(args.quantizers)
    skipped = {}
    if "peer" in names:
        try:
            import vector_quantize_pytorch  # noqa: F401
        except ImportError as err:
            names.remove("peer")
            skipped["peer"] = f"vector-quantize-pytorch not importable: {err}"
            print(f"warning: {skipped['peer']}; benchmarking ours only", file=sys.stderr)
    if not names:
        sys.exit("nothing to benchmark")

    record: dict = {
        "benchmark": "quantizer_forward_backward_throughput",
        "date": utc_now(),
        "machine": machine_info(torch, device),
        "git": git_info(),
        "packages": package_versions(PACKAGES),
        "command": [sys.executable, *sys.argv] if argv is None else ["main", *argv],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "skipped": skipped,
        "results": [],
    }
    record["args"]["quantizers"] = names
    t_start = time.perf_counter()
    for k in args.codebook_size:
        for layers in args.layers:
            rows = bench_config(args, names, k, layers, device, torch)
            record["results"].extend(rows)
            print(
                f"K={k:<5d} L={layers:<3d} "
                + "  ".join(f"{r['quantizer']}={r['vectors_per_second']:>12,.0f} vec/s" for r in rows),
                flush=True,
            )
    record["wall_seconds"] = time.perf_counter() - t_start
    if hasattr(os, "getloadavg"):
        record["machine"]["loadavg_end"] = list(os.getloadavg())
    record["ratios"] = ratios(record["results"])
    table = markdown(record)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    print(table)
    return record


if __name__ == "__main__":
    main()
