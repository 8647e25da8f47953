"""Regenerate sqcodec/data/lists/speech_{train,heldout}.txt from the real-audio manifest.

Usage: python tools/make_realaudio_lists.py [REALAUDIO_ROOT]
Only CC-BY / public-domain corpora are listed; held-out speakers come from heldout_speakers.txt.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from sqcodec.data import LISTS, realaudio_root

ALLOWED = (
    "speech/vctk48k/",
    "speech/vctk16k/",
    "speech/librispeech/",
    "speech/ljspeech/",
    "speech/cmu_arctic/",
)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else realaudio_root()
    held = [
        line.strip()
        for line in (LISTS.parent / "heldout_speakers.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    train, heldout = [], []
    with open(root / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            path = row["file"]
            if not path.startswith(ALLOWED):
                continue
            parts = path.split("/")
            is_held = any(parts[1] == h.split("/")[0] and h.split("/")[1] in parts[2:-1] for h in held)
            (heldout if is_held else train).append(path)
    LISTS.mkdir(exist_ok=True)
    (LISTS / "speech_train.txt").write_text("\n".join(sorted(train)) + "\n")
    (LISTS / "speech_heldout.txt").write_text("\n".join(sorted(heldout)) + "\n")
    print(f"train {len(train)} files, heldout {len(heldout)} files")


if __name__ == "__main__":
    main()
