"""Shared fixtures. ``realaudio``: the shared real recordings (never copied into the repo).

Found at ``$SQCODEC_REALAUDIO``, else at ``shared/data/realaudio`` in the repository root or any folder
above it. Missing: the test is skipped, unless ``SQCODEC_REQUIRE_DATA=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_realaudio() -> tuple[Path | None, str]:
    env = os.environ.get("SQCODEC_REALAUDIO")
    if env:
        root = Path(env)
        where = f"SQCODEC_REALAUDIO={env}"
        return (root if (root / "MANIFEST.tsv").is_file() else None), where
    for parent in (REPO, *REPO.parents):
        cand = parent / "shared" / "data" / "realaudio"
        if (cand / "MANIFEST.tsv").is_file():
            return cand, str(cand)
    return None, f"shared/data/realaudio in {REPO} or any folder above it"


@pytest.fixture(scope="session")
def realaudio() -> Path:
    """Root of the real-audio folder (holds MANIFEST.tsv); skips (or fails under CI) when absent."""
    root, where = _find_realaudio()
    if root is None:
        msg = f"real recordings not found ({where} has no MANIFEST.tsv); set SQCODEC_REALAUDIO to the folder"
        if os.environ.get("SQCODEC_REQUIRE_DATA") == "1":
            pytest.fail(f"SQCODEC_REQUIRE_DATA=1 but {msg}")
        pytest.skip(msg)
    return root


def _drop_unimportable_lazy_modules() -> None:
    """SpeechBrain registers lazy modules (e.g. its k2 integration) that raise ImportError on any attribute
    access; Hypothesis scans ``sys.modules`` for ``__file__`` and would crash on them once speechbrain
    is imported by an earlier test. Drop the entries that cannot even report their file."""
    import sys

    for name, module in list(sys.modules.items()):
        try:
            getattr(module, "__file__", None)
        except Exception:  # noqa: BLE001 - whatever the lazy import raises
            del sys.modules[name]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        _drop_unimportable_lazy_modules()
