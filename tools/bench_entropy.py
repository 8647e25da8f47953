"""Size of ``.codes`` files per ``--layers`` with the three ways a layer can be stored: bit-packed,
range-coded with a per-file table (in the header) and range-coded with the model's fixed tables
(``entropy_tables.json`` of the model folder; ``entropy="auto"`` then picks per layer and file).

For each file of the speaker-disjoint held-out list (``sqcodec/data/lists/speech_heldout.txt``, the list
``tools/bench_codec_quality.py`` uses) the codec writes its file as ``sqcodec encode --layers L`` does
(:meth:`Codec.encode_file`: same header, chunking and meta), then the same codes are serialised
``entropy=False`` (packed), ``entropy="auto"`` without model tables (per-file tables only: the behaviour
before model tables) and ``entropy="auto"`` with them (the default now). Reported: total bytes, the
actual file rate (bits over the covered duration) and the gain against packed. Also the ideal
payload cost of the model tables in bits per index on these codes (against ``ceil(log2 K)``), and the
same three sizes for all held-out codes as ONE stream (a 4-minute file), where the header's share is
small. The baseline for the header: the same codes packed in a format-version-1 file (plain JSON header;
version 2, the default, stores it deflated with a preset dictionary).

    OMP_NUM_THREADS=1 python tools/bench_entropy.py \\
        --json docs/benchmarks/entropy.json --markdown docs/benchmarks/entropy.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "numpy", "constriction", "soundfile", "soxr", "sqcodec")
MODES = ("packed_v1", "packed", "per_file", "auto")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="codec folder (default: the embedded default)")
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--limit", type=int, default=0, help="first N held-out files only (0 = all)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    return ap.parse_args(argv)


def sizes(cf, tables) -> dict[str, int]:
    """Bytes of ``cf`` stored packed, with per-file tables only, and with ``auto`` + the model tables."""
    from sqcodec.bitstream import to_bytes

    return {
        "packed_v1": len(to_bytes(cf, False, version=1)),
        "packed": len(to_bytes(cf, False)),
        "per_file": len(to_bytes(cf, "auto")),
        "auto": len(to_bytes(cf, "auto", tables)),
    }


def markdown(r: dict) -> str:
    lines = [
        f"Held-out speakers: {r['files']} files, {r['seconds'] / 60:.1f} min, model `{r['model_id']}`, "
        f"entropy tables sha256 `{r['tables_sha256'][:12]}...`.",
        "",
        "| `--layers` | nominal bit/s | packed, v1 header | packed | per-file tables | model tables (`auto`) "
        "| v2 header vs v1 | entropy gain vs packed | ideal bits/index (model tables) "
        "| one 4-min stream: packed / per-file / auto |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        bps = {m: f"{row[m]['bps']:.0f} bit/s ({row[m]['bytes']:,} B)" for m in MODES}
        ideal = ", ".join(f"{b:.2f}" for b in row["ideal_bits_per_index"])
        s = row["one_stream"]
        lines.append(
            f"| {row['layers']} | {row['nominal_bps']:.0f} | {bps['packed_v1']} | {bps['packed']} | "
            f"{bps['per_file']} | {bps['auto']} | {-100 * row['header_gain']:.1f}% | "
            f"{100 * row['gain']:.1f}% | {ideal} | "
            f"{s['packed']:,} / {s['per_file']:,} / {s['auto']:,} B "
            f"({100 * (1 - s['auto'] / s['packed']):.1f}%) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import torch

    from sqcodec.codec import load_codec
    from sqcodec.data import realaudio_root, speech_list
    from sqcodec.eval.provenance import bench_record, write_outputs

    torch.set_num_threads(1)
    codec = load_codec(args.model, vocoder="griffinlim")
    tables = codec.entropy_tables
    if tables is None:
        raise SystemExit(f"{args.model or 'the default model'} has no entropy_tables.json")
    root = realaudio_root()
    files = speech_list("heldout", root)[: args.limit or None]
    record = bench_record("codes_entropy_size", args, PACKAGES, None if argv is None else list(argv))
    record.update({"model_id": codec.model_id, "model_sha256": codec.model_sha256, "files": len(files)})
    record["tables_sha256"] = tables.sha256
    record["tables_built_from"] = tables.built_from
    rows = []
    seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for layers in args.layers:
            total = dict.fromkeys(MODES, 0)
            streams = []
            seconds = 0.0
            for f in files:
                cf = codec.encode_file(f, Path(tmp) / "x.codes", layers=layers)
                for mode, n in sizes(cf, tables).items():
                    total[mode] += n
                streams.append(cf)
                seconds += cf.orig_length / cf.orig_sample_rate
            codes = np.concatenate([cf.codes for cf in streams], axis=1)
            one = replace(streams[0], codes=codes, orig_length=sum(cf.orig_length for cf in streams))
            rows.append(
                {
                    "layers": layers,
                    "nominal_bps": codec.bits_per_second(layers),
                    **{m: {"bytes": total[m], "bps": total[m] * 8 / seconds} for m in MODES},
                    "gain": 1 - total["auto"] / total["packed"],
                    "header_gain": 1 - total["packed"] / total["packed_v1"],
                    "ideal_bits_per_index": [tables.bits(i, row) / row.size for i, row in enumerate(codes)],
                    "one_stream": sizes(one, tables),
                }
            )
            print(f"--layers {layers}: {rows[-1]['gain']:.2%}", file=sys.stderr, flush=True)
    record.update({"seconds": seconds, "rows": rows})
    write_outputs(record, markdown(record), args.json, args.markdown)
    return record


if __name__ == "__main__":
    main()
