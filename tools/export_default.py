#!/usr/bin/env python
"""Package the embedded default codec: a trained RSQ-VAE experiment + a trained HiFi-GAN vocoder ->
``sqcodec/pretrained/default/`` (safetensors + JSON, no pickle), with its training record and the data
attributions.

How the shipped model (v4) was made (CPU here, one thread; a GPU run uses the same commands with
``device: cuda``; its exact config is in ``TRAINING.json``, ``codec.history`` says how the run went)::

    python - <<'EOF'   # the training lists, from sqcodec/data/lists (speaker-disjoint held-out)
    from sqcodec.data import speech_list
    open("speech_train.txt", "w").write("".join(f"{f}\\n" for f in speech_list("train")))
    EOF
    # v3: default_codec.yaml without speed perturbation, 36,000 steps from scratch
    python -m sqcodec.train --config sqcodec/configs/default_codec.yaml --out exp/codec_v3 \\
        --set data.train=speech_train.txt data.speed_perturb=[] train.steps=36000
    # v4: v3 resumed at step 36,000 with speed perturbation and a late lr decay (BENCHMARKS.md §3.2, arm C)
    mkdir -p exp/codec_v4/checkpoints && cp exp/codec_v3/*.* exp/codec_v4/ \\
        && cp exp/codec_v3/checkpoints/step_00036000.pt exp/codec_v4/checkpoints/
    python -m sqcodec.train --config exp/codec_v4/config.yaml --out exp/codec_v4 --resume \\
        --set train.steps=66000 optim.lr=1e-3 schedule.name=multistep 'schedule.milestones=[56000, 62000]' \\
        schedule.gamma=0.25 'data.speed_perturb=[0.9, 1.0, 1.1]'

The vocoder is trained apart, on ground-truth features (``vocoder.json``'s record chains every run it
continued: 3,449 steps from scratch, then two continuations with ``--init-generator``; BENCHMARKS.md §3.1
has the commands)::

    python -m sqcodec.vocoder.train --train speech_train.txt --out exp/vocoder_v3 --size v3 --batch 8 \\
        --gan-start 100000 --lr 4e-4 --lr-decay 1.0
    python -m sqcodec.vocoder.train --out exp/voc_c2 --train speech_train.txt --gan-start 1000000 \\
        --batch 8 --lr 2e-4 --lr-decay 0.9 --init-generator exp/voc_cont/vocoder     # the last one
    python -m sqcodec.vocoder.train --out exp/voc_c2 --export exp/voc_c2/vocoder

and both are packaged together::

    python tools/export_default.py --codec exp/codec_v4 --checkpoint exp/codec_v4/best.pt \\
        --vocoder exp/voc_c2/vocoder --model-id sqcodec-default-rsq8x256-v4 --default-vocoder griffinlim \\
        --history "..." --trained-on "CPU, one thread"

``--vocoder`` takes an exported vocoder folder (the shipped one, to retrain only the codec) or a vocoder
experiment.

The export also builds the model's entropy tables (``entropy_tables.json``, :mod:`sqcodec.entropy_tables`)
from the codes of every file of the training list at all layers (never the held-out speakers), and
records how in ``TRAINING.json`` (``entropy_tables``). ``--tables-only`` rebuilds just those for the
folder as it is (same model)::

    OMP_NUM_THREADS=1 python tools/export_default.py --tables-only
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqcodec.codec import DEFAULT_MODEL_DIR, Codec, load_codec, read_mono_blocks, save_codec  # noqa: E402
from sqcodec.data import realaudio_root, speech_list  # noqa: E402
from sqcodec.entropy_tables import TABLES_NAME, build_tables, code_histograms, save_tables  # noqa: E402
from sqcodec.train.checkpoint import find_latest, load_checkpoint, load_model  # noqa: E402
from sqcodec.vocoder.hifigan import VOCODER_CONFIG, HifiGanVocoder, load_vocoder  # noqa: E402
from sqcodec.vocoder.train import trained_vocoder  # noqa: E402

ATTRIBUTION = """# Training data of the embedded default model

The default codec (`model.safetensors`) and its HiFi-GAN vocoder (`vocoder.safetensors`) were trained
only on the CC-BY-4.0, public-domain and free-with-attribution speech listed in `training_list.txt`
(paths relative to the real-audio folder; speakers in `sqcodec/data/heldout_speakers.txt` were held out
for evaluation). The weights are released under the project's Apache-2.0 licence; the data they were
trained on is attributed here:

{rows}

- **VCTK**: Yamagishi, Veaux, MacDonald, "CSTR VCTK Corpus: English Multi-speaker Corpus for CSTR
  Voice Cloning Toolkit (version 0.92)", University of Edinburgh, CSTR, 2019. CC-BY-4.0.
- **LibriSpeech**: Panayotov, Chen, Povey, Khudanpur, "LibriSpeech: an ASR corpus based on public
  domain audio books", ICASSP 2015 (www.openslr.org/12). CC-BY-4.0.
- **LJSpeech**: Keith Ito and Linda Johnson, "The LJ Speech Dataset", 2017. Public domain.
- **CMU ARCTIC**: Kominek and Black, "The CMU Arctic speech databases", SSW5 2004, Carnegie Mellon
  University. Free use, modification and distribution with attribution.
"""


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def entropy_tables(codec: Codec, folder: Path, commit: str) -> dict:
    """Build the model's entropy tables from the codes (all layers) of the files of
    ``folder/training_list.txt`` (relative to the real-audio folder), write ``entropy_tables.json`` and
    return the record for ``TRAINING.json``."""
    root = realaudio_root()
    rel = (folder / "training_list.txt").read_text().split()
    heldout = set(speech_list("heldout", root))
    if any(root / r in heldout for r in rel):
        raise SystemExit("training_list.txt holds held-out files: refusing to build tables from them")
    codes = (codec.encode_blocks(read_mono_blocks(root / r, codec.sample_rate))[0].numpy() for r in rel)
    hists = code_histograms(codes, codec.codebook_sizes)
    record = {
        "list": "training_list.txt",
        "files": len(rel),
        "layers": codec.num_layers,
        "tool": "tools/export_default.py",
        "commit": commit,
    }
    tables = build_tables(hists, model_sha256=codec.model_sha256, built_from=record)
    save_tables(tables, folder / TABLES_NAME)
    bits = [
        float(-(h * np.log2(c / float(1 << tables.precision))).sum() / max(1, int(h.sum())))
        for h, c in zip(hists, tables.counts, strict=True)
    ]
    return {
        "file": TABLES_NAME,
        "sha256": tables.sha256,
        "precision": tables.precision,
        **tables.built_from,
        "train_bits_per_index": [round(b, 3) for b in bits],
    }


def tables_only(folder: Path) -> int:
    codec = load_codec(folder, vocoder="griffinlim")
    record = entropy_tables(codec, folder, git_commit())
    training = folder / "TRAINING.json"
    doc = json.loads(training.read_text())
    doc["entropy_tables"] = record
    training.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(json.dumps(record, indent=1))
    return 0


def load_trained_vocoder(path: Path) -> HifiGanVocoder:
    """The HiFi-GAN to ship: an exported vocoder folder (``vocoder.json`` + ``vocoder.safetensors``, e.g. the
    model shipped now, when only the codec is retrained) with the record it has, or the newest checkpoint
    of a ``sqcodec.vocoder.train`` experiment with the record its ``--export`` writes."""
    if (path / VOCODER_CONFIG).is_file():
        return load_vocoder(path)
    return trained_vocoder(path).prepare_inference()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codec", type=Path, help="training experiment folder of the codec")
    ap.add_argument(
        "--vocoder", type=Path, help="sqcodec.vocoder.train experiment folder, or an exported vocoder folder"
    )
    ap.add_argument(
        "--checkpoint", type=Path, default=None, help="codec checkpoint (default: best.pt, else the newest)"
    )
    ap.add_argument(
        "--history", default="", help="how the codec run was made, for TRAINING.json (resumes, data changes)"
    )
    ap.add_argument(
        "--trained-on", default="", help="the codec's training machine, for TRAINING.json (default: device)"
    )
    ap.add_argument(
        "--tables-only", action="store_true", help="only rebuild the entropy tables of --out (same model)"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--model-id", default="sqcodec-default-rsq8x256-v1")
    ap.add_argument(
        "--default-vocoder",
        choices=("hifigan", "griffinlim"),
        default="hifigan",
        help="what decode uses unless told (the HiFi-GAN ships either way)",
    )
    args = ap.parse_args()
    if args.tables_only:
        return tables_only(args.out)
    if args.codec is None or args.vocoder is None:
        ap.error("--codec and --vocoder are required (unless --tables-only)")

    ckpt_path = args.checkpoint or args.codec / "best.pt"
    if not ckpt_path.is_file():
        ckpt_path = find_latest(args.codec)
    model, cfg = load_model(ckpt_path)
    step = int(load_checkpoint(ckpt_path)["step"])
    commit = git_commit()
    vocoder = load_trained_vocoder(args.vocoder)
    codec = Codec(model, cfg["data"]["preset"], model_id=args.model_id, vocoder=vocoder)
    if args.out.exists():
        shutil.rmtree(args.out)
    save_codec(codec, args.out, default_vocoder=args.default_vocoder)
    root = realaudio_root()
    files = speech_list("train", root)
    rel = [str(Path(f).relative_to(root)) for f in files]
    (args.out / "training_list.txt").write_text("".join(f"{r}\n" for r in rel))
    record = {
        "model_id": args.model_id,
        "model_sha256": codec.model_sha256,
        "codec": {
            "config": cfg,
            "checkpoint": ckpt_path.name,
            "step": step,
            "history": args.history,
            "trained_on": args.trained_on or cfg["train"].get("device"),
        },
        "vocoder": vocoder.record,
        "data": {
            "list": "training_list.txt",
            "files": len(rel),
            "heldout_speakers": "sqcodec/data/heldout_speakers.txt",
        },
        "default_vocoder": args.default_vocoder,
        "bitrates_bps": {str(n): codec.bits_per_second(n) for n in range(1, codec.num_layers + 1)},
        "commit": commit,
        "entropy_tables": entropy_tables(codec, args.out, commit),
    }
    (args.out / "TRAINING.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    manifest = {row["file"]: row for row in csv.DictReader((root / "MANIFEST.tsv").open(), delimiter="\t")}
    counts: dict[tuple[str, str], int] = {}
    for r in rel:
        m = manifest.get(r, {})
        key = (m.get("corpus", "?"), m.get("licence", "?"))
        counts[key] = counts.get(key, 0) + 1
    rows = "\n".join(f"| {c} | {n} | {lic} |" for (c, lic), n in sorted(counts.items()))
    table = "| corpus | files | licence |\n|---|---|---|\n" + rows
    (args.out / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(rows=table))
    for p in sorted(args.out.iterdir()):
        print(f"{p}  {p.stat().st_size} bytes")
    for n in range(1, codec.num_layers + 1):
        print(f"--layers {n}: {codec.bits_per_second(n):.0f} bit/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
