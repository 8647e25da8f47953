"""The shipped speaker-disjoint split of the real recordings (sqcodec/data/lists)."""

from __future__ import annotations

from pathlib import Path

from sqcodec.data import LISTS, speech_list

ALLOWED = (
    "speech/vctk48k/",
    "speech/vctk16k/",
    "speech/librispeech/",
    "speech/ljspeech/",
    "speech/cmu_arctic/",
)


def _speaker(rel: str) -> str:
    parts = rel.split("/")
    if parts[1] in ("ljspeech", "cmu_arctic"):
        return parts[1]
    return f"{parts[1]}/{parts[-2]}"


def test_lists_are_speaker_disjoint_and_only_cc_by_or_public_domain() -> None:
    train = (LISTS / "speech_train.txt").read_text().split()
    held = (LISTS / "speech_heldout.txt").read_text().split()
    assert train and held
    assert all(p.startswith(ALLOWED) for p in train + held)
    assert not {_speaker(p) for p in train} & {_speaker(p) for p in held}
    assert not set(train) & set(held)


def test_listed_files_exist(realaudio: Path) -> None:
    for split in ("train", "heldout"):
        files = speech_list(split, realaudio)
        missing = [str(f) for f in files if not f.is_file()]
        assert not missing, f"{len(missing)} listed files missing, e.g. {missing[:2]}"
