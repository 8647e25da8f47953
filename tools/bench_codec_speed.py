"""Codec speed: real-time factors of the embedded default codec next to EnCodec 24 kHz, in one process.

Systems, each timed on the same real speech (held-out VCTK/LibriSpeech files concatenated to
``--seconds``), round-robin repeat by repeat so that load drift on a shared machine hits all alike:

- ``sqcodec codec-only``: log-mel features -> codes -> log-mel features (``model.encode`` / ``decode``,
  ``--layers`` layers); features computed once, outside the timing;
- ``sqcodec full (griffinlim|hifigan)``: waveform at 16 kHz -> codes -> waveform (``Codec.encode`` /
  ``Codec.decode_audio``), mel front-end and vocoder included;
- ``encodec 24 kHz``: waveform at 24 kHz -> codes -> waveform with the ``encodec`` package's
  ``encodec_model_24khz(pretrained=False)`` at ``--encodec-kbps`` (random weights: the weights cannot be
  downloaded here and do not change the compute; speed only).

Each is run at batch 1 and at ``--batch`` (streams of the same length). Speed is reported as times
faster than real time, ``audio seconds processed / wall seconds`` (median over ``--repeats``), and the
ratio sqcodec / EnCodec (> 1: ours faster).

    python tools/bench_codec_speed.py --threads 2 --seconds 10 --batch 8 --repeats 5 \\
        --json docs/benchmarks/codec_speed_cpu.json --markdown docs/benchmarks/codec_speed_cpu.md
    python tools/bench_codec_speed.py --smoke --json /tmp/smoke.json       # tiny setting, for tests
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torchaudio", "numpy", "speechbrain", "encodec", "sqcodec")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="audio per stream")
    p.add_argument("--batch", type=int, default=8, help="streams in the batched setting")
    p.add_argument("--layers", type=int, default=8, help="sqcodec layers (8 = 2 kbit/s)")
    p.add_argument("--encodec-kbps", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--systems", default="codec_only,full_griffinlim,full_hifigan,encodec")
    p.add_argument("--smoke", action="store_true", help="tiny setting: 1 s, batch 2, 1 repeat")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args(argv)
    if args.smoke:
        args.seconds, args.batch, args.repeats, args.warmup = 1.0, 2, 1, 0
    args.systems = [s for s in args.systems.split(",") if s]
    return args


def speech(seconds: float, sr: int) -> np.ndarray:
    """Real held-out speech at ``sr`` Hz, files concatenated until ``seconds`` are filled."""
    from sqcodec.audio.io import load_mono
    from sqcodec.data import realaudio_root, speech_list

    root = realaudio_root()
    if root is None:
        sys.exit("real-audio folder not found: set SQCODEC_REALAUDIO")
    need = int(round(seconds * sr))
    parts, have = [], 0
    for f in speech_list("heldout", root):
        parts.append(load_mono(f, sr)[0])
        have += len(parts[-1])
        if have >= need:
            break
    return np.concatenate(parts)[:need].astype(np.float32)


def systems(args: argparse.Namespace, torch) -> dict[str, tuple[int, Callable[[int], Callable[[], None]]]]:
    """name -> (sample rate, make(batch) -> one timed call)."""
    from sqcodec.codec import load_codec

    out: dict[str, tuple[int, Callable[[int], Callable[[], None]]]] = {}
    device = torch.device(args.device)
    if any(s.startswith(("codec_only", "full")) for s in args.systems):
        gl = load_codec(None, device=device, vocoder="griffinlim")
        sr = gl.sample_rate

        def codec_only(batch: int) -> Callable[[], None]:
            from sqcodec.audio.features import wave_to_features

            wave = speech(args.seconds, sr)
            mel = torch.from_numpy(np.asarray(wave_to_features(wave, gl.preset))).float()
            x = mel[None].repeat(batch, 1, 1).to(device)

            def run() -> None:
                with torch.no_grad():
                    codes = gl.model.encode(x, layers=args.layers)
                    gl.model.decode(codes, length=x.shape[-1])

            return run

        def full(codec) -> Callable[[int], Callable[[], None]]:
            def make(batch: int) -> Callable[[], None]:
                wave = np.stack([speech(args.seconds, sr)] * batch)

                def run() -> None:
                    codes = codec.encode(wave, sr, layers=args.layers)
                    codec.decode_audio(codes, length=wave.shape[-1])

                return run

            return make

        if "codec_only" in args.systems:
            out["codec_only"] = (sr, codec_only)
        if "full_griffinlim" in args.systems:
            out["full_griffinlim"] = (sr, full(gl))
        if "full_hifigan" in args.systems:
            out["full_hifigan"] = (sr, full(load_codec(None, device=device, vocoder="hifigan")))
    if "encodec" in args.systems:
        from encodec import EncodecModel

        torch.manual_seed(0)
        model = EncodecModel.encodec_model_24khz(pretrained=False).to(device).eval()
        model.set_target_bandwidth(args.encodec_kbps)

        def encodec(batch: int) -> Callable[[], None]:
            wave = torch.from_numpy(speech(args.seconds, 24000))
            x = wave[None, None].repeat(batch, 1, 1).to(device)

            def run() -> None:
                with torch.no_grad():
                    model.decode(model.encode(x))

            return run

        out["encodec"] = (24000, encodec)
    return out


LABELS = {
    "codec_only": "sqcodec codec-only (mel -> codes -> mel)",
    "full_griffinlim": "sqcodec full, Griffin-Lim (wav -> codes -> wav)",
    "full_hifigan": "sqcodec full, HiFi-GAN V3 (wav -> codes -> wav)",
    "encodec": "EnCodec 24 kHz, random weights (wav -> codes -> wav)",
}


def bench(args: argparse.Namespace, torch) -> list[dict]:
    table = systems(args, torch)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    results = []
    for batch in sorted({1, args.batch}):
        calls = {name: make(batch) for name, (_, make) in table.items()}
        for _ in range(args.warmup):
            for call in calls.values():
                call()
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.repeats):
            for name, call in calls.items():
                sync()
                t0 = time.perf_counter()
                call()
                sync()
                times[name].append(time.perf_counter() - t0)
        for name, ts in times.items():
            med = statistics.median(ts)
            results.append(
                {
                    "system": name,
                    "batch": batch,
                    "audio_seconds": args.seconds * batch,
                    "repeat_seconds": ts,
                    "median_seconds": med,
                    "x_realtime": args.seconds * batch / med,
                }
            )
            print(f"batch {batch:<3d} {name:<16s} {args.seconds * batch / med:8.1f}x real time", flush=True)
    return results


def markdown(record: dict) -> str:
    rows = [
        "| system | batch | audio per call (s) | median wall (s) | x real time | vs EnCodec |",
        "|---|---|---|---|---|---|",
    ]
    peer = {r["batch"]: r["x_realtime"] for r in record["results"] if r["system"] == "encodec"}
    for r in record["results"]:
        ratio = f"{r['x_realtime'] / peer[r['batch']]:.2f}" if r["batch"] in peer else "-"
        rows.append(
            f"| {LABELS[r['system']]} | {r['batch']} | {r['audio_seconds']:.0f} | "
            f"{r['median_seconds']:.3f} | {r['x_realtime']:.1f} | {ratio} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from sqcodec.eval.provenance import bench_record, set_threads, write_outputs

    set_threads(args.threads)
    import torch

    record = bench_record("codec_real_time_factor", args, PACKAGES, argv, args.device)
    t0 = time.perf_counter()
    record["results"] = bench(args, torch)
    record["wall_seconds"] = time.perf_counter() - t0
    write_outputs(record, markdown(record), args.json, args.markdown)
    return record


if __name__ == "__main__":
    main()
