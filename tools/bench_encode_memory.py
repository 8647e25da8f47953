"""Peak memory of ``sqcodec encode`` as the input grows (1 min ... 1 h), next to EnCodec's encoder.

For each duration a 16 kHz mono 16-bit WAV is built by tiling real held-out speech, and each encoder runs
in its own child process; its peak resident set size is read from ``os.wait4`` (per child, not the
cumulative ``RUSAGE_CHILDREN`` maximum). sqcodec runs the real CLI (``python -m sqcodec.cli encode
in.wav out.codes --layers 8``: chunked, so its memory should not depend on the duration); the peer is
EnCodec 24 kHz (``encodec`` package, random weights, ``model.encode`` on the whole file resampled to
24 kHz, which is what its API does for the 24 kHz model, ``segment=None``), run only up to
``--peer-max-seconds`` because its memory grows with the input.

    python tools/bench_encode_memory.py --seconds 60,600,1800,3600 --threads 2 \\
        --json docs/benchmarks/encode_memory.json --markdown docs/benchmarks/encode_memory.md
    python tools/bench_encode_memory.py --smoke --json /tmp/smoke.json    # 2 s and 4 s, for tests
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "numpy", "soundfile", "soxr", "encodec", "sqcodec")
PEER_SNIPPET = """
import sys, numpy as np, soundfile as sf, soxr, torch
from encodec import EncodecModel
torch.manual_seed(0)
m = EncodecModel.encodec_model_24khz(pretrained=False).eval()
m.set_target_bandwidth(3.0)
w, sr = sf.read(sys.argv[1], dtype="float32")
x = torch.from_numpy(soxr.resample(w, sr, 24000))[None, None]
with torch.no_grad():
    frames = m.encode(x)
print(sum(c.shape[-1] for c, _ in frames))
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", default="60,600,1800,3600", help="comma-separated input durations")
    p.add_argument("--peer-max-seconds", type=float, default=600.0)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=None, help="where the long WAVs go (default: a temp dir)")
    p.add_argument("--smoke", action="store_true", help="2 s and 4 s inputs, for tests")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args(argv)
    args.seconds = [2.0, 4.0] if args.smoke else [float(s) for s in args.seconds.split(",") if s]
    return args


def write_input(path: Path, seconds: float, sr: int = 16000) -> None:
    """A WAV of ``seconds`` of tiled real held-out speech, written block by block."""
    import soundfile as sf

    from sqcodec.audio.io import load_mono
    from sqcodec.data import realaudio_root, speech_list

    root = realaudio_root()
    if root is None:
        sys.exit("real-audio folder not found: set SQCODEC_REALAUDIO")
    pieces = [load_mono(f, sr)[0] for f in speech_list("heldout", root)[:8]]
    base = np.concatenate(pieces).astype(np.float32)
    need = int(round(seconds * sr))
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as out:
        done = 0
        while done < need:
            block = base[: need - done]
            out.write(block)
            done += len(block)


def run_child(cmd: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return {"peak_rss_mib": usage.ru_maxrss / 1024.0, "wall_seconds": wall, "stdout": out.decode()[-200:]}


def markdown(record: dict) -> str:
    rows = ["| input | sqcodec encode peak RSS (MiB) | wall (s) | EnCodec encode peak RSS (MiB) | wall (s) |"]
    rows.append("|---|---|---|---|---|")
    for r in record["results"]:
        peer = r.get("encodec")
        p = f"{peer['peak_rss_mib']:.0f} | {peer['wall_seconds']:.1f}" if peer else "not run | -"
        ours = r["sqcodec"]
        rows.append(
            f"| {r['seconds']:.0f} s | {ours['peak_rss_mib']:.0f} | {ours['wall_seconds']:.1f} | {p} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from sqcodec.eval.provenance import bench_record, write_outputs

    try:
        import encodec  # noqa: F401

        have_peer = True
    except ImportError:
        have_peer = False
        print("warning: encodec not importable; measuring sqcodec only", file=sys.stderr)
    record = bench_record("encode_peak_rss", args, PACKAGES, argv)
    record["results"] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for seconds in args.seconds:
            wav, codes = Path(tmp) / "in.wav", Path(tmp) / "out.codes"
            write_input(wav, seconds)
            encode = ["-m", "sqcodec.cli", "encode", str(wav), str(codes), "--layers", str(args.layers)]
            ours = run_child([sys.executable, *encode, "--force"], args.threads)
            ours["codes_bytes"] = codes.stat().st_size
            row = {"seconds": seconds, "wav_bytes": wav.stat().st_size, "sqcodec": ours}
            if have_peer and seconds <= args.peer_max_seconds:
                row["encodec"] = run_child([sys.executable, "-c", PEER_SNIPPET, str(wav)], args.threads)
            record["results"].append(row)
            print(
                f"{seconds:>7.0f} s: sqcodec {ours['peak_rss_mib']:.0f} MiB"
                + (f", encodec {row['encodec']['peak_rss_mib']:.0f} MiB" if "encodec" in row else ""),
                flush=True,
            )
            wav.unlink()
    write_outputs(record, markdown(record), args.json, args.markdown)
    return record


if __name__ == "__main__":
    main()
