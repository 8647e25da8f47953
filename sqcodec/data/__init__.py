"""Data lists shipped with sqcodec: the speaker-disjoint split of the shared real recordings.

``lists/speech_{train,heldout}.txt`` hold paths relative to the real-audio root (``SQCODEC_REALAUDIO``,
default ``../shared/data/realaudio``). Only CC-BY and public-domain speech is listed (VCTK, LibriSpeech,
LJSpeech, CMU ARCTIC): those are what shipped models may be trained on. ``tools/make_realaudio_lists.py``
regenerates the lists from the corpus manifest and ``heldout_speakers.txt``.

:mod:`sqcodec.data.images` prepares the image corpora of the image recipes (split files) and builds the
trainer's image batches (``data.kind: image``).
"""

from __future__ import annotations

import os
from pathlib import Path

LISTS = Path(__file__).with_name("lists")


def realaudio_root() -> Path | None:
    """The real-audio folder: ``$SQCODEC_REALAUDIO``, else ``shared/data/realaudio`` beside a parent."""
    env = os.environ.get("SQCODEC_REALAUDIO")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        cand = parent.parent / "shared" / "data" / "realaudio"
        if cand.is_dir():
            return cand
    return None


def speech_list(split: str, root: Path | None = None) -> list[Path]:
    """Absolute paths of the ``split`` ("train" or "heldout") speech files under ``root``."""
    root = root or realaudio_root()
    if root is None:
        raise FileNotFoundError("real-audio folder not found: set SQCODEC_REALAUDIO")
    lines = (LISTS / f"speech_{split}.txt").read_text().split()
    return [root / line for line in lines]
