"""Names, file formats and helpers shared by MUSHRA build, serve and analyze (no heavy imports)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write

__all__ = [
    "ANCHORS",
    "CSV_TAIL",
    "HIDDEN_REFERENCE",
    "PARTICIPANT_FIELDS",
    "RESERVED_NAMES",
    "TEST_FORMAT",
    "MushraError",
    "csv_header",
    "load_test",
    "results_csv",
    "sanitize_test_id",
    "write_text_atomic",
]

#: The name of the hidden reference in results (webMUSHRA's name for it).
HIDDEN_REFERENCE = "reference"
#: ``--anchors`` keyword -> (condition name in results, low-pass cut-off in Hz or None for noise).
#: The low-pass names are the ones webMUSHRA gives its own generated anchors.
ANCHORS: dict[str, tuple[str, float | None]] = {
    "lp35": ("anchor35", 3500.0),
    "lp7": ("anchor70", 7000.0),
    "noise": ("anchor_noise", None),
}
RESERVED_NAMES = frozenset({HIDDEN_REFERENCE, *(name for name, _ in ANCHORS.values())})

TEST_FORMAT = "sqcodec-mushra"

#: What the finish page of webMUSHRA and the intro of the built-in page ask; these become CSV columns.
PARTICIPANT_FIELDS: list[dict[str, Any]] = [
    {"name": "alias", "label": "Name or alias", "type": "text", "optional": False},
    {
        "name": "experience",
        "label": "Experience with listening tests",
        "type": "choice",
        "options": ["none", "some", "expert"],
        "optional": False,
    },
]

#: The webMUSHRA result columns after ``session_test_id`` and the participant fields.
CSV_TAIL = ("session_uuid", "trial_id", "rating_stimulus", "rating_score", "rating_time", "rating_comment")


class MushraError(ValueError):
    """Bad input for a MUSHRA command: one line naming the file (or option) and the problem."""

    def __init__(self, message: object) -> None:
        super().__init__(" ".join(str(message).split()))


def sanitize_test_id(test_id: str) -> str:
    """The results folder name webMUSHRA's ``write.php`` derives from a test id (lower case, runs of
    characters other than letters, digits, ``_`` and ``-`` become one ``-``)."""
    s = re.sub(r"[^\w\-]+", "-", test_id)
    return re.sub(r"--+", "-", s).lower()


def csv_header(fields: list[dict[str, Any]]) -> list[str]:
    """``session_test_id, <participant field names>, session_uuid, trial_id, rating_*``."""
    return ["session_test_id", *(f["name"] for f in fields), *CSV_TAIL]


def results_csv(test_dir: Path, test: dict[str, Any]) -> Path:
    """Where ``serve`` appends the ratings of a test: ``TEST_DIR/results/<test id>/mushra.csv``."""
    return Path(test_dir) / "results" / sanitize_test_id(test["test_id"]) / "mushra.csv"


def load_test(test_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``TEST_DIR/test.json`` written by ``build``; :class:`MushraError` if unusable."""
    path = Path(test_dir) / "test.json"
    if not Path(test_dir).is_dir():
        raise MushraError(f"{test_dir}: no such folder")
    try:
        test = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MushraError(f"{path}: not found (make the test with 'sqcodec mushra build')") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MushraError(f"{path}: cannot read test definition ({exc})") from None
    if (
        not isinstance(test, dict)
        or test.get("format") != TEST_FORMAT
        or not isinstance(test.get("trials"), list)
    ):
        raise MushraError(f"{path}: not a test definition written by 'sqcodec mushra build'")
    return test


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> Path:
    """Write ``text`` (str as UTF-8, or bytes) to a temporary file beside ``path``, fsync, then rename it
    onto ``path``: readers see the old or the new file, never a partial one. The file gets the permissions
    ``open(path, "w")`` gives; an ``OSError`` (disk full, no permission) names ``path`` and leaves no
    temporary file."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return atomic_write(path, lambda f: f.write(data))
