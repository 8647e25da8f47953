"""Entropy tables stored with a model: one fixed integer frequency table per quantizer layer, known to the
encoder and the decoder, so a ``.codes`` file can be range-coded without carrying its own tables.

The container that uses them is :mod:`sqcodec.bitstream` (``write_codes(..., model_tables=)``); a model
folder holds them as ``entropy_tables.json`` (:data:`TABLES_NAME`, written by :func:`save_tables`, read
and validated by :func:`load_tables`)::

    {"format": "sqcodec-entropy-tables", "version": 1, "precision": 16, "codebook_sizes": [256, ...],
     "counts": [[...K ints...], ...], "sha256": "<hex>", "model_sha256": "<hex>", "built_from": {...}}

Every count is >= 1 (any index stays codable) and each layer's counts sum to exactly ``2**precision``
(so ``counts / 2**precision`` is exact in float64: the same model on every machine). ``sha256`` is the
hash of the canonical bytes (:meth:`ModelTables.canonical_bytes`); a ``.codes`` header that uses the
tables names it, and the reader refuses other tables.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .bitstream import ENTROPY_MAX_CODEBOOK, MIN_CODEBOOK, TABLE_PRECISIONS, dyadic_table

__all__ = [
    "DEFAULT_TABLES",
    "TABLES_FORMAT",
    "TABLES_NAME",
    "EntropyTablesError",
    "ModelTables",
    "build_tables",
    "code_histograms",
    "load_tables",
    "save_tables",
]

TABLES_NAME = "entropy_tables.json"
#: the tables of the embedded default model (``sqcodec.codec.DEFAULT_MODEL_DIR``), readable without torch
DEFAULT_TABLES = Path(__file__).resolve().parent / "pretrained" / "default" / TABLES_NAME
TABLES_FORMAT = "sqcodec-entropy-tables"
TABLES_VERSION = 1
#: the precision of tables built by :func:`build_tables` (the finest the container allows)
DEFAULT_PRECISION = max(TABLE_PRECISIONS)
#: a tables file larger than this is refused before parsing (64 layers x 4096 counts of 6 digits fit)
MAX_TABLES_BYTES = 4 << 20
#: Krichevsky-Trofimov smoothing: counts ``2 * n + 1`` (``n + 1/2`` scaled), so unseen indices stay codable
SMOOTHING = "krichevsky-trofimov (n + 1/2)"


class EntropyTablesError(ValueError):
    """An entropy-tables file that cannot be read or is invalid; one-line message naming the file."""

    def __init__(self, path: str | os.PathLike | None, problem: str) -> None:
        where = "<entropy tables>" if path is None else str(path)
        super().__init__(f"{where}: {problem}".replace("\n", " "))


@dataclass(frozen=True)
class ModelTables:
    """Per layer, an int64 table over all ``K_l`` indices (each >= 1) summing to ``2**precision``.

    ``model_sha256``: the model whose codes the tables were built from (informational; the ``.codes``
    header checks the model hash itself). ``built_from``: provenance (list, files, latents, smoothing).
    """

    precision: int
    counts: tuple[np.ndarray, ...]
    model_sha256: str | None = None
    built_from: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self.precision, [c.tolist() for c in self.counts], None)

    @property
    def codebook_sizes(self) -> list[int]:
        return [int(c.size) for c in self.counts]

    def canonical_bytes(self) -> bytes:
        """Sorted-key compact JSON of ``{codebook_sizes, counts, precision}``: what :attr:`sha256` hashes."""
        body = {
            "codebook_sizes": self.codebook_sizes,
            "counts": [[int(x) for x in c] for c in self.counts],
            "precision": int(self.precision),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def bits(self, layer: int, codes: Any) -> float:
        """Ideal coded size in bits of ``codes`` (indices of ``layer``) under this table."""
        c = self.counts[layer]
        return float(-np.log2(c[np.asarray(codes, dtype=np.int64)] / float(1 << self.precision)).sum())


def _validate(precision: Any, counts: Any, path: Any) -> list[np.ndarray]:
    """Check a table set (JSON-like) and return it as int64 arrays; raises :class:`EntropyTablesError`."""
    if not isinstance(precision, int) or isinstance(precision, bool) or precision not in TABLE_PRECISIONS:
        raise EntropyTablesError(
            path, f"'precision' must be an integer in {TABLE_PRECISIONS.start}..{TABLE_PRECISIONS.stop - 1}"
        )
    if not isinstance(counts, list) or not counts:
        raise EntropyTablesError(path, "'counts' must be a non-empty list of per-layer lists")
    out = []
    for layer, row in enumerate(counts):
        ok = (
            isinstance(row, list)
            and MIN_CODEBOOK <= len(row) <= ENTROPY_MAX_CODEBOOK
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in row)
        )
        if not ok:
            raise EntropyTablesError(
                path,
                f"layer {layer}: counts must be {MIN_CODEBOOK}..{ENTROPY_MAX_CODEBOOK} integers, each >= 1",
            )
        if sum(row) != 1 << precision:
            raise EntropyTablesError(path, f"layer {layer}: counts sum to {sum(row)}, not 2**{precision}")
        out.append(np.asarray(row, dtype=np.int64))
    return out


def code_histograms(codes: Iterable[Any], codebook_sizes: list[int]) -> list[np.ndarray]:
    """Per-layer index histograms of an iterable of ``(layers, num_latents)`` code arrays (every layer of
    ``codebook_sizes`` must be present in each)."""
    hists = [np.zeros(k, dtype=np.int64) for k in codebook_sizes]
    for c in codes:
        c = np.asarray(c)
        if c.ndim != 2 or c.shape[0] < len(codebook_sizes):
            raise ValueError(f"codes must be (>= {len(codebook_sizes)} layers, latents), got {c.shape}")
        for layer, k in enumerate(codebook_sizes):
            hists[layer] += np.bincount(c[layer].astype(np.int64), minlength=k)[:k]
            if c[layer].size and (int(c[layer].min()) < 0 or int(c[layer].max()) >= k):
                raise ValueError(f"layer {layer} holds indices outside [0, {k})")
    return hists


def build_tables(
    hists: list[np.ndarray],
    precision: int = DEFAULT_PRECISION,
    model_sha256: str | None = None,
    built_from: dict[str, Any] | None = None,
) -> ModelTables:
    """Tables from per-layer histograms (:func:`code_histograms`): Krichevsky-Trofimov smoothing (each
    index counted ``n + 1/2`` times, as the integers ``2n + 1``) then the dyadic rounding of the
    container (:func:`sqcodec.bitstream.dyadic_table`), so every count is >= 1 and each layer sums to
    ``2**precision``."""
    counts = []
    for layer, h in enumerate(hists):
        h = np.asarray(h, dtype=np.int64)
        if 1 << precision < 2 * h.size:
            raise ValueError(f"layer {layer}: 2**{precision} is too small for {h.size} indices (>= 2 K)")
        counts.append(dyadic_table(2 * h + 1, precision))
    record = {"smoothing": SMOOTHING, "latents": int(sum(hists[0])) if hists else 0, **(built_from or {})}
    return ModelTables(int(precision), tuple(counts), model_sha256, record)


def save_tables(tables: ModelTables, path: str | os.PathLike) -> Path:
    """Write ``tables`` as JSON (atomically) to ``path`` (a folder gets :data:`TABLES_NAME`)."""
    from .fsutil import atomic_write

    path = Path(path)
    if path.is_dir():
        path = path / TABLES_NAME
    doc = {
        "format": TABLES_FORMAT,
        "version": TABLES_VERSION,
        "precision": tables.precision,
        "codebook_sizes": tables.codebook_sizes,
        "counts": [[int(x) for x in c] for c in tables.counts],
        "sha256": tables.sha256,
        "model_sha256": tables.model_sha256,
        "built_from": tables.built_from,
    }
    # one layer per line: diffable, and small (8 x 256 counts is ~12 KiB)
    lines = [f" {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in doc.items() if k != "counts"]
    rows = ",\n".join(f"  {json.dumps(row, separators=(',', ':'))}" for row in doc["counts"])
    text = "{\n" + ",\n".join([*lines, f' "counts": [\n{rows}\n ]']) + "\n}\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def load_tables(path: str | os.PathLike) -> ModelTables:
    """Read and validate a tables file (JSON only): format, version, precision, every count >= 1, the
    exact power-of-two sums, ``codebook_sizes`` = the row lengths, and ``sha256`` = the hash of the
    canonical bytes. Any problem raises :class:`EntropyTablesError` naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TABLES_BYTES:
            raise EntropyTablesError(path, f"is {size} bytes, more than the {MAX_TABLES_BYTES} allowed")
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise EntropyTablesError(path, f"cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise EntropyTablesError(path, "is not UTF-8 text") from None

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        doc = json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError) as err:
        raise EntropyTablesError(path, f"is not valid JSON ({type(err).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != TABLES_FORMAT:
        raise EntropyTablesError(path, f"is not an sqcodec entropy-tables file (format {TABLES_FORMAT!r})")
    if doc.get("version") != TABLES_VERSION:
        raise EntropyTablesError(
            path, f"has version {doc.get('version')!r}; this sqcodec reads {TABLES_VERSION}"
        )
    counts = _validate(doc.get("precision"), doc.get("counts"), path)
    if doc.get("codebook_sizes") != [c.size for c in counts]:
        raise EntropyTablesError(path, "'codebook_sizes' does not match the lengths of the count rows")
    model_sha = doc.get("model_sha256")
    built = doc.get("built_from", {})
    if not (model_sha is None or isinstance(model_sha, str)) or not isinstance(built, dict):
        raise EntropyTablesError(path, "'model_sha256' must be a string or null and 'built_from' an object")
    tables = ModelTables(doc["precision"], tuple(counts), model_sha, built)
    if doc.get("sha256") != tables.sha256:
        raise EntropyTablesError(
            path,
            f"'sha256' {str(doc.get('sha256'))[:12]}... is not the hash of its tables "
            f"({tables.sha256[:12]}...)",
        )
    return tables
