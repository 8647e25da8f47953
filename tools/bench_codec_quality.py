#!/usr/bin/env python
"""Quality of a codec per ``--layers`` on the held-out speakers, with its vocoder ceiling and Griffin-Lim.

For every file of the speaker-disjoint held-out list (``sqcodec/data/lists/speech_heldout.txt``, read from
the shared real-audio folder), at the codec rate (16 kHz mono):

- ``codec, L layers``: encode, decode L layers, vocode -> bit/s, log-mel RMSE (decoded features against
  the input's, no vocoder in between), mel distance (Codec-SUPERB's), STOI, PESQ-wb (audio);
- ``vocoder on ground-truth mels``: the ceiling of every codec row;
- ``Griffin-Lim on ground-truth mels``: the fallback vocoder, the baseline the ceiling must beat;
- the ``.codes`` size with and without entropy coding (the size gain on real codes).

Codec-SUPERB's EnCodec figures are printed beside the table, labelled as a third-party benchmark on
another test set (``../shared/reference/ecosystem_notes.md`` §6).

    python tools/bench_codec_quality.py                      # the embedded default model
    python tools/bench_codec_quality.py --model exp/x/best.pt --vocoder exp/voc --out docs/benchmarks/x
    python tools/bench_codec_quality.py --split train --every 13 --layers 8 --vocoder griffinlim  # fit
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqcodec.audio import load_mono, mel_features  # noqa: E402
from sqcodec.bitstream import CodesFile, to_bytes  # noqa: E402
from sqcodec.codec import load_codec  # noqa: E402
from sqcodec.data import realaudio_root, speech_list  # noqa: E402
from sqcodec.eval.metrics import log_mel_rmse, mel_distance, pesq_score, stoi_score  # noqa: E402
from sqcodec.vocoder.griffinlim import griffin_lim  # noqa: E402

#: Codec-SUPERB (voidful/Codec-SUPERB web/src/results/data.js): EnCodec 24 kHz on ITS test set
CODEC_SUPERB_ENCODEC = [
    {"kbps": 1.5, "mel_distance": 1.331, "pesq_wb": 1.462, "stoi": 0.773},
    {"kbps": 3.0, "mel_distance": 1.175, "pesq_wb": 1.923, "stoi": 0.841},
    {"kbps": 6.0, "mel_distance": 1.060, "pesq_wb": 2.538, "stoi": 0.893},
]
METRICS = ("logmel_rmse", "mel_distance", "stoi", "pesq_wb")


def audio_metrics(ref: np.ndarray, deg: np.ndarray, sr: int) -> dict[str, float]:
    n = min(len(ref), len(deg))
    ref, deg = ref[:n], deg[:n]
    return {
        "mel_distance": mel_distance(ref, deg, sr),
        "stoi": stoi_score(ref, deg, sr),
        "pesq_wb": pesq_score(ref, deg, sr, "wb"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="codec (default: the embedded default)")
    ap.add_argument("--vocoder", default="auto", help="auto | griffinlim | a vocoder folder")
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--limit", type=int, default=0, help="first N files of the split only (0 = all)")
    ap.add_argument(
        "--split",
        choices=("heldout", "train"),
        default="heldout",
        help="the test set; 'train' (the training speakers) measures how much better the model fits them",
    )
    ap.add_argument("--every", type=int, default=1, help="every N-th file of the split only")
    ap.add_argument("--griffinlim-iters", type=int, default=32)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "codec_quality")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    codec = load_codec(args.model, vocoder=args.vocoder)
    if codec.vocoder is None:
        print("note: no HiFi-GAN vocoder; codec rows use Griffin-Lim", file=sys.stderr)
    sr, preset = codec.sample_rate, codec.preset
    root = realaudio_root()
    files = speech_list(args.split, root)[:: max(1, args.every)]
    if args.limit:
        files = files[: args.limit]
    layers = [n for n in args.layers if n <= codec.num_layers]
    systems = (["vocoder_gt"] if codec.vocoder is not None else []) + ["griffinlim_gt"]
    systems += [f"codec_{n}" for n in layers]
    rows: dict[str, list[dict]] = {s: [] for s in systems}
    sizes = {"packed": 0, "entropy": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        wave, _ = load_mono(f, sr)
        feats = mel_features(wave, preset)
        n = len(wave)
        name = str(Path(f).relative_to(root))
        if codec.vocoder is not None:
            voc = codec.vocode(feats, length=n)
            rows["vocoder_gt"].append({"file": name, "logmel_rmse": 0.0, **audio_metrics(wave, voc, sr)})
        gl = griffin_lim(feats, preset.name, n_iter=args.griffinlim_iters, length=n)
        rows["griffinlim_gt"].append({"file": name, "logmel_rmse": 0.0, **audio_metrics(wave, gl, sr)})
        codes = codec.encode(torch.from_numpy(wave), sr)[0]
        cf = CodesFile(
            codes=codes.numpy(),
            codebook_sizes=codec.codebook_sizes,
            model_id=codec.model_id,
            model_sha256=codec.model_sha256,
            preset=preset.name,
            sample_rate=sr,
            hop=preset.hop_length,
            latent_rate=codec.latent_rate,
            orig_sample_rate=sr,
            orig_channels=1,
            orig_length=n,
            gain=1.0,
            chunk_latents=codes.shape[-1],
            meta={},
        )
        sizes["packed"] += len(to_bytes(cf, False))
        sizes["entropy"] += len(to_bytes(cf, "auto"))
        sizes["seconds"] += n / sr
        for nl in layers:
            dec = codec.decode(codes[None, :nl])[0][..., : feats.shape[-1]]
            y = codec.vocode(dec, length=n)
            rows[f"codec_{nl}"].append(
                {
                    "file": name,
                    "logmel_rmse": log_mel_rmse(feats.numpy(), dec.numpy(), preset),
                    **audio_metrics(wave, y, sr),
                }
            )
        print(f"[{i + 1}/{len(files)}] {name} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    def mean(system: str) -> dict[str, float]:
        return {m: float(np.mean([r[m] for r in rows[system]])) for m in METRICS}

    summary = []
    for s in systems:
        nl = int(s.split("_")[1]) if s.startswith("codec_") else None
        summary.append(
            {
                "system": s,
                "layers": nl,
                "bps": codec.bits_per_second(nl) if nl else None,
                **mean(s),
            }
        )
    result = {
        "model": codec.model_id,
        "model_sha256": codec.model_sha256,
        "vocoder": type(codec.vocoder).__name__ if codec.vocoder is not None else "griffinlim",
        "vocoder_record": getattr(codec.vocoder, "record", None),
        "split": args.split,
        "files": len(files),
        "seconds": sizes["seconds"],
        "summary": summary,
        "codes_size": {
            "packed_bytes": sizes["packed"],
            "entropy_bytes": sizes["entropy"],
            "packed_bps": sizes["packed"] * 8 / sizes["seconds"],
            "entropy_bps": sizes["entropy"] * 8 / sizes["seconds"],
            "gain": 1 - sizes["entropy"] / sizes["packed"],
        },
        "codec_superb_encodec_24k_third_party": CODEC_SUPERB_ENCODEC,
        "per_file": rows,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "wall_s": time.perf_counter() - t0,
        "command": "python tools/bench_codec_quality.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


def markdown(r: dict) -> str:
    label = {
        "vocoder_gt": "HiFi-GAN on ground-truth mels (ceiling)",
        "griffinlim_gt": "Griffin-Lim on ground-truth mels",
    }
    lines = [
        f"{'Training' if r.get('split') == 'train' else 'Held-out'} speakers: {r['files']} files, "
        f"{r['seconds'] / 60:.1f} min, model `{r['model']}`.",
        "",
        "| system | bit/s | log-mel RMSE | mel distance | STOI | PESQ-wb |",
        "|---|---|---|---|---|---|",
    ]
    for s in r["summary"]:
        voc = "HiFi-GAN" if r["vocoder"] != "griffinlim" else "Griffin-Lim"
        name = label.get(s["system"], f"sqcodec `--layers {s['layers']}` ({voc})")
        bps = f"{s['bps']:.0f}" if s["bps"] else "-"
        rmse = f"{s['logmel_rmse']:.3f}" if s["layers"] else "0 (input mels)"
        lines.append(
            f"| {name} | {bps} | {rmse} | {s['mel_distance']:.3f} | {s['stoi']:.3f} | {s['pesq_wb']:.2f} |"
        )
    for e in r["codec_superb_encodec_24k_third_party"]:
        lines.append(
            f"| *EnCodec 24 kHz, Codec-SUPERB (third-party, other test set)* | {e['kbps'] * 1000:.0f} | - | "
            f"{e['mel_distance']:.3f} | {e['stoi']:.3f} | {e['pesq_wb']:.2f} |"
        )
    c = r["codes_size"]
    lines += [
        "",
        f"Entropy coding on these real codes (all {r['summary'][-1]['layers']} layers): "
        f"{c['packed_bps']:.0f} -> {c['entropy_bps']:.0f} bit/s actual file rate "
        f"({100 * c['gain']:.1f}% smaller).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
