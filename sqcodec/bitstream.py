"""The ``.codes`` container: a versioned, checksummed, layer-scalable file of quantizer indices.

Layout (big-endian; byte-by-byte table in ``docs/bitstream.md``), modelled on EnCodec's ``.ecdc``::

    b"SQCD" | u8 version (=2) | u32 header_len | header | u32 CRC32 of all before
    then ceil(num_latents / chunk_latents) chunks, each:
      u32 n (latents in this chunk)
      for each layer l (layer-major): packed block  = ceil(n * bits_l / 8) bytes | u32 CRC32(block)
                                   or coded block   = u32 m | m bytes           | u32 CRC32(m | bytes)

The header is UTF-8 JSON with sorted keys: stored as is in version 1; in version 2 (written by default)
raw-deflated with the fixed preset dictionary :data:`HEADER_ZDICT`, with ``meta`` left out when empty
(about 100 bytes instead of about 480 for the default model).

``bits_l = ceil(log2 K_l)``; packed indices are LSB-first (value bit 0 first, bytes filled from their
least significant bit), zero-padded to a byte. A reader that wants ``l'`` layers seeks over the blocks of
the others, so ``read_codes(path, layers=3)`` never reads the bytes of layers 4..L. Entropy-coded layers
(optional, per layer, only where it pays) use constriction's range coder with a static integer frequency
table: one stored in the header (per file), or the model's own (:mod:`sqcodec.entropy_tables`, named in
the header by its sha256; reading then needs those tables). Tables are dyadic (counts sum to 2**P), so a
file decodes identically everywhere.

Every problem with a file raises :class:`CodesFormatError` (a ``ValueError``) with a one-line message that
names the file. Sizes in the header are checked against the file size before anything is allocated.
The format version is a promise: each version keeps its reader in ``_READERS``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .fsutil import atomic_write

if TYPE_CHECKING:
    from .entropy_tables import ModelTables

__all__ = [
    "FORMAT_VERSION",
    "HEADER_ZDICT",
    "MAGIC",
    "WRITABLE_VERSIONS",
    "CodesFile",
    "CodesFormatError",
    "bits_for",
    "check_codes",
    "dyadic_table",
    "file_bits_per_second",
    "from_bytes",
    "pack_bits",
    "read_codes",
    "read_header",
    "to_bytes",
    "unpack_bits",
    "write_codes",
]

MAGIC = b"SQCD"
FORMAT_VERSION = 2
#: versions :func:`write_codes` can write (older ones for tests and for tools that must emit them)
WRITABLE_VERSIONS = (1, 2)
#: Version 2's deflate preset dictionary: the keys and the usual values of a header, most common last.
#: Part of the format: it can never change for version 2.
HEADER_ZDICT = (
    b'{"chunk_latents":1024,"codebook_sizes":[1024,1024,512,512],"entropy":{"coder":'
    b'"constriction-range-categorical-fast","model_tables_sha256":"","tables":[null,{"counts":"",'
    b'"precision":16},"model","model","model"]},"gain":1.0,"hop":160,"latent_rate":50.0,"layers":4,'
    b'"meta":{"num_samples":},"model_id":"sqcodec-","model_sha256":"","num_latents":,"orig_channels":1,'
    b'"orig_length":,"orig_sample_rate":44100,"preset":"vctk16k","sample_rate":16000,"version":2}'
    b'{"chunk_latents":938,"codebook_sizes":[256,256,256,256,256,256,256,256],"entropy":null,'
    b'"gain":1.0,"hop":256,"latent_rate":31.25,"layers":8,"model_id":"sqcodec-default-rsq8x256-v",'
    b'"model_sha256":"","num_latents":,"orig_channels":1,"orig_length":,"orig_sample_rate":16000,'
    b'"preset":"codec16k","sample_rate":16000,"version":2}'
)
#: ``!4sBI``: magic, version, header length
_PREAMBLE = struct.Struct("!4sBI")
_U32 = struct.Struct("!I")

MAX_HEADER_BYTES = 1 << 16
MAX_LAYERS = 64
MIN_CODEBOOK = 2
MAX_CODEBOOK = 1 << 20
#: layers * num_latents may not exceed this (1 GiB of int64 codes): rejected before allocating
MAX_CODES = 1 << 27
MAX_CHUNK_LATENTS = 1 << 24
MAX_RATE = 10_000_000
#: libsndfile reads and writes at most 1024 channels: more cannot come from an input nor be decoded
MAX_CHANNELS = 1024
MAX_ORIG_LENGTH = 1 << 48
#: entropy coding: each coded layer's integer table sums to 2**precision, precision in this range
TABLE_PRECISIONS = range(4, 17)
#: base64 characters all tables of a file may take in the header (the rest of a 64 KiB header is spare)
TABLE_BUDGET = 48 << 10
ENTROPY_MAX_CODEBOOK = 4096
ENTROPY_CODER = "constriction-range-categorical-fast"
#: a layer entry of ``entropy.tables`` that means "coded with the model's table of this layer"
MODEL_TABLE = "model"

_HEADER_KEYS = {
    "version",
    "model_id",
    "model_sha256",
    "preset",
    "sample_rate",
    "hop",
    "latent_rate",
    "orig_sample_rate",
    "orig_channels",
    "orig_length",
    "gain",
    "layers",
    "codebook_sizes",
    "chunk_latents",
    "num_latents",
    "entropy",
    "meta",
}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CodesFormatError(ValueError):
    """A ``.codes`` file (or a :class:`CodesFile` about to be written) is invalid; message names the file."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        where = "<codes>" if path is None else str(path)
        super().__init__(f"{where}: {problem}".replace("\n", " "))


def bits_for(k: int) -> int:
    """Bits of one index of a ``k``-entry codebook: ``ceil(log2 k)``."""
    return (int(k) - 1).bit_length()


# ----------------------------------------------------------------------------------------- bit packing

_SLICE = 1 << 16  # values per vectorised slice (a multiple of 8, so every slice ends on a byte)


def pack_bits(values: Any, bits: int) -> bytes:
    """Pack non-negative integers at ``bits`` bits each, LSB-first, zero-padded to a whole byte."""
    v = np.asarray(values).ravel()
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    if v.size and (int(v.min()) < 0 or int(v.max()) >> bits):
        raise ValueError(f"values must be in [0, 2**{bits})")
    v = v.astype(np.uint64)
    shifts = np.arange(bits, dtype=np.uint64)
    out = []
    for s in range(0, v.size, _SLICE):
        bitmat = ((v[s : s + _SLICE, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        out.append(np.packbits(bitmat.ravel(), bitorder="little").tobytes())
    return b"".join(out)


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` int64 values; raises ValueError on wrong size or padding."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    if len(data) != (count * bits + 7) // 8:
        raise ValueError(f"expected {(count * bits + 7) // 8} bytes for {count} values, got {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(count, dtype=np.int64)
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    step = _SLICE * bits // 8
    for i, s in enumerate(range(0, count, _SLICE)):
        n = min(_SLICE, count - s)
        b = np.unpackbits(raw[i * step : (i + 1) * step], bitorder="little")
        if b[n * bits :].any():
            raise ValueError("non-zero padding bits")
        out[s : s + n] = b[: n * bits].reshape(n, bits).astype(np.int64) @ weights
    return out


# -------------------------------------------------------------------------------------- the container


@dataclass
class CodesFile:
    """Codes of one stream plus everything decode needs to restore the original audio.

    ``codes``: ``(layers, num_latents)`` integer indices (multi-channel input is downmixed before encoding;
    ``orig_channels`` lets decode restore the channel count). ``gain``: the factor the input was divided
    by before encoding (1.0 = none). ``chunk_latents``: latents per storage chunk (each chunk and layer
    block has its own CRC). ``entropy_tables``: per layer, the integer frequency table used to code it
    (``None`` = bit-packed; the model's table for a layer coded with it); filled by :func:`read_codes`,
    ignored by :func:`write_codes` (it chooses its own). ``meta``: free-form JSON-able notes (encoder
    version, chunking of inference, ...).
    """

    codes: np.ndarray
    codebook_sizes: list[int]
    model_id: str
    model_sha256: str
    preset: str
    sample_rate: int
    hop: int
    latent_rate: float
    orig_sample_rate: int
    orig_channels: int = 1
    orig_length: int = 0
    gain: float = 1.0
    chunk_latents: int = 1024
    meta: dict[str, Any] = field(default_factory=dict)
    entropy_tables: list[np.ndarray | None] | None = None

    @property
    def layers(self) -> int:
        return int(np.shape(self.codes)[0])

    @property
    def num_latents(self) -> int:
        return int(np.shape(self.codes)[1])

    @property
    def duration(self) -> float:
        """Seconds of audio the codes cover: ``num_latents / latent_rate``."""
        return self.num_latents / self.latent_rate

    def bits_per_second(self, layers: int | None = None) -> float:
        """Nominal payload bitrate: ``latent_rate * sum_l ceil(log2 K_l)`` over the first ``layers``."""
        n = self.layers if layers is None else int(layers)
        if not 1 <= n <= len(self.codebook_sizes):
            raise ValueError(f"layers must be in 1..{len(self.codebook_sizes)}, got {layers}")
        return self.latent_rate * sum(bits_for(k) for k in self.codebook_sizes[:n])

    def header(self) -> dict[str, Any]:
        """The JSON header of this file (without the entropy tables, which the writer adds)."""
        return {
            "version": FORMAT_VERSION,
            "model_id": self.model_id,
            "model_sha256": self.model_sha256,
            "preset": self.preset,
            "sample_rate": self.sample_rate,
            "hop": self.hop,
            "latent_rate": float(self.latent_rate),
            "orig_sample_rate": self.orig_sample_rate,
            "orig_channels": self.orig_channels,
            "orig_length": self.orig_length,
            "gain": float(self.gain),
            "layers": self.layers,
            "codebook_sizes": [int(k) for k in self.codebook_sizes],
            "chunk_latents": self.chunk_latents,
            "num_latents": self.num_latents,
            "entropy": None,
            "meta": self.meta,
        }


def file_bits_per_second(path: str | os.PathLike) -> float:
    """Actual bitrate of a ``.codes`` file: its size in bits over the duration its codes cover."""
    header = read_header(path)
    duration = header["num_latents"] / header["latent_rate"]
    if duration <= 0:
        raise CodesFormatError(path, "holds no latents, so it has no bitrate")
    return os.path.getsize(path) * 8 / duration


# --------------------------------------------------------------------------------- header validation


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_field(h: dict, key: str, lo: int, hi: int, path: Any) -> int:
    x = h.get(key)
    if not _is_int(x) or not lo <= x <= hi:
        raise CodesFormatError(path, f"header field {key!r} must be an integer in [{lo}, {hi}], got {x!r}")
    return x


def _float_field(h: dict, key: str, lo: float, hi: float, path: Any) -> float:
    x = h.get(key)
    ok = _is_int(x) or isinstance(x, float) and math.isfinite(x)  # no float(): ints may be huge
    if not ok or not lo < x <= hi:
        raise CodesFormatError(path, f"header field {key!r} must be a number in ({lo}, {hi}], got {x!r}")
    return float(x)


def _str_field(h: dict, key: str, path: Any, max_len: int = 256) -> str:
    x = h.get(key)
    if not isinstance(x, str) or len(x) > max_len:
        raise CodesFormatError(path, f"header field {key!r} must be a string of at most {max_len} characters")
    return x


def _check_header(h: Any, path: Any, version: int) -> dict[str, Any]:
    """Validate a header dict of format ``version`` (types, ranges, internal consistency); returns it
    with tables decoded (and, from version 2, an omitted ``meta`` as ``{}``)."""
    if not isinstance(h, dict):
        raise CodesFormatError(path, f"header is a JSON {type(h).__name__}, not an object")
    optional = {"meta"} if version >= 2 else set()
    missing = sorted(_HEADER_KEYS - optional - h.keys())
    unknown = sorted(h.keys() - _HEADER_KEYS)
    if missing or unknown:
        raise CodesFormatError(path, f"header fields missing {missing} / unknown {unknown}")
    if h["version"] != version or not _is_int(h["version"]):
        raise CodesFormatError(
            path, f"header says version {h['version']!r} but the file is version {version}"
        )
    if "meta" not in h:
        h = {**h, "meta": {}}
    _str_field(h, "model_id", path)
    _str_field(h, "preset", path)
    sha = h["model_sha256"]
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise CodesFormatError(path, "header field 'model_sha256' must be 64 lowercase hex digits")
    _int_field(h, "sample_rate", 1, MAX_RATE, path)
    _int_field(h, "hop", 1, MAX_RATE, path)
    _float_field(h, "latent_rate", 0.0, float(MAX_RATE), path)
    _int_field(h, "orig_sample_rate", 1, MAX_RATE, path)
    _int_field(h, "orig_channels", 1, MAX_CHANNELS, path)
    _int_field(h, "orig_length", 0, MAX_ORIG_LENGTH, path)
    _float_field(h, "gain", 0.0, 1e30, path)
    layers = _int_field(h, "layers", 1, MAX_LAYERS, path)
    sizes = h["codebook_sizes"]
    if (
        not isinstance(sizes, list)
        or len(sizes) != layers
        or not all(_is_int(k) and MIN_CODEBOOK <= k <= MAX_CODEBOOK for k in sizes)
    ):
        raise CodesFormatError(
            path, f"header 'codebook_sizes' must be {layers} integers in [{MIN_CODEBOOK}, {MAX_CODEBOOK}]"
        )
    _int_field(h, "chunk_latents", 1, MAX_CHUNK_LATENTS, path)
    _int_field(h, "num_latents", 0, MAX_CODES // layers, path)
    if not isinstance(h["meta"], dict):
        raise CodesFormatError(path, "header field 'meta' must be an object")
    h = dict(h)
    h["tables"] = _check_entropy(h["entropy"], sizes, path)
    return h


def _is_model(table: Any) -> bool:
    return isinstance(table, str) and table == MODEL_TABLE


def _check_entropy(e: Any, sizes: list[int], path: Any) -> list[np.ndarray | str | None]:
    """Per layer: ``None`` (packed), the header's own table, or :data:`MODEL_TABLE` (the model's table)."""
    if e is None:
        return [None] * len(sizes)
    if not isinstance(e, dict) or set(e) - {"model_tables_sha256"} != {"coder", "tables"}:
        raise CodesFormatError(
            path, "header 'entropy' must be null or {coder, tables[, model_tables_sha256]}"
        )
    if e["coder"] != ENTROPY_CODER:
        raise CodesFormatError(path, f"unsupported entropy coder {e['coder']!r}")
    tables = e["tables"]
    if not isinstance(tables, list) or len(tables) != len(sizes):
        raise CodesFormatError(path, f"header 'entropy.tables' must list {len(sizes)} entries")
    uses_model = any(_is_model(t) for t in tables)
    sha = e.get("model_tables_sha256")
    if uses_model != ("model_tables_sha256" in e) or (
        uses_model and not (isinstance(sha, str) and _SHA256.fullmatch(sha))
    ):
        raise CodesFormatError(
            path,
            "header 'entropy.model_tables_sha256' must be 64 lowercase hex digits, given exactly when a "
            f"layer's table is {MODEL_TABLE!r}",
        )
    out: list[np.ndarray | str | None] = []
    for layer, (t, k) in enumerate(zip(tables, sizes, strict=True)):
        if t is None or (_is_model(t) and k <= ENTROPY_MAX_CODEBOOK):
            out.append(t)
            continue
        bad = f"entropy table of layer {layer} is malformed"
        if (
            not isinstance(t, dict)
            or set(t) != {"precision", "counts"}
            or not _is_int(t["precision"])
            or t["precision"] not in TABLE_PRECISIONS
            or not isinstance(t["counts"], str)
            or k > ENTROPY_MAX_CODEBOOK
        ):
            raise CodesFormatError(path, bad)
        try:
            counts = _gamma_decode(base64.b64decode(t["counts"].encode("ascii"), validate=True), k) - 1
        except (ValueError, binascii.Error, UnicodeEncodeError) as err:
            raise CodesFormatError(path, f"{bad} ({err})") from None
        if int(counts.sum()) != 1 << t["precision"]:
            raise CodesFormatError(
                path, f"entropy table of layer {layer} does not sum to 2**{t['precision']}"
            )
        out.append(counts)
    if all(t is None for t in out):
        raise CodesFormatError(path, "header 'entropy' lists no coded layer; it must then be null")
    return out


# -------------------------------------------------------------------------------------- entropy coding


def _constriction(path: Any):
    try:
        import constriction
    except ImportError:  # pragma: no cover - depends on the environment
        raise CodesFormatError(path, "is entropy-coded: reading it needs the constriction package") from None
    return constriction


def _model(constriction, counts: np.ndarray):
    # counts sum to a power of two, so counts / sum is exact in float64: the same model on every machine
    probs = counts.astype(np.float64) / float(int(counts.sum()))
    return constriction.stream.model.Categorical(probs, perfect=False)


def _gamma_encode(values: Any) -> bytes:
    """Elias gamma codes (``n-1`` zeros, then ``v`` in ``n`` bits, MSB-first) of values >= 1, zero-padded."""
    bits = "".join("0" * (int(v).bit_length() - 1) + format(int(v), "b") for v in values)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def _gamma_decode(data: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`_gamma_encode`; ValueError on short data, overlong codes or stray bits."""
    bits = "".join(format(b, "08b") for b in data)
    out = np.empty(count, dtype=np.int64)
    pos = 0
    for i in range(count):
        one = bits.find("1", pos, pos + 18)
        if one < 0:
            raise ValueError("gamma code too long or data too short")
        end = 2 * one - pos + 1
        if end > len(bits):
            raise ValueError("gamma data too short")
        out[i] = int(bits[one:end], 2)
        pos = end
    if len(bits) - pos >= 8 or "1" in bits[pos:]:
        raise ValueError("stray bits after the gamma codes")
    return out


def dyadic_table(hist: np.ndarray, precision: int) -> np.ndarray:
    """Integer table summing to 2**precision from a histogram; every observed symbol keeps a count >= 1.

    Needs ``2**precision >= 2 * (number of observed symbols)`` (then the loop below always makes progress).
    """
    hist = np.asarray(hist, dtype=np.int64)
    total = 1 << precision
    counts = np.maximum(hist * total // max(int(hist.sum()), 1), (hist > 0).astype(np.int64))
    excess = int(counts.sum()) - total
    if excess < 0:
        counts[int(np.argmax(counts))] -= excess
    while excess > 0:  # rare symbols were rounded up to 1: take it back from the largest counts
        i = int(np.argmax(counts))
        take = min(excess, int(counts[i]) // 2)
        counts[i] -= take
        excess -= take
    return counts


def _best_table(symbols: np.ndarray, k: int) -> tuple[np.ndarray, str]:
    """The table (and its base64 gamma coding) minimising estimated coded bits + table bits."""
    hist = np.bincount(symbols, minlength=k)
    seen = hist > 0
    best: tuple[float, np.ndarray, str] | None = None
    for precision in TABLE_PRECISIONS:
        if 1 << precision < 2 * int(seen.sum()):
            continue
        counts = dyadic_table(hist, precision)
        text = base64.b64encode(_gamma_encode(counts + 1)).decode("ascii")
        bits = float(-(hist[seen] * np.log2(counts[seen] / (1 << precision))).sum()) + 6 * len(text)
        if best is None or bits < best[0]:
            best = (bits, counts, text)
    assert best is not None  # k <= 4096 <= 2**16 / 2: the largest precision always qualifies
    return best[1], best[2]


def _encode_block(constriction, model, symbols: np.ndarray) -> bytes:
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(symbols.astype(np.int32), model)
    return enc.get_compressed().astype(">u4").tobytes()


def _decode_block(constriction, model, data: bytes, n: int) -> np.ndarray:
    words = np.frombuffer(data, dtype=">u4").astype(np.uint32)
    dec = constriction.stream.queue.RangeDecoder(words)
    out = np.asarray(dec.decode(model, n), dtype=np.int64)
    # the decoder cannot see a stray trailing word, so insist on the canonical (re-encoded) bytes
    if _encode_block(constriction, model, out) != data:
        raise ValueError("coded block has unused or non-canonical data")
    return out


# --------------------------------------------------------------------------------------------- writing


def _validate_for_write(cf: CodesFile) -> tuple[np.ndarray, dict[str, Any]]:
    codes = np.asarray(cf.codes)
    if codes.ndim != 2 or not (np.issubdtype(codes.dtype, np.integer) or codes.size == 0):
        raise CodesFormatError(
            None, f"codes must be a 2-D integer array (layers, latents), got shape {codes.shape}"
        )
    header = cf.header()
    header["entropy"] = None
    _check_header(header, None, FORMAT_VERSION)
    sizes = header["codebook_sizes"]
    codes = codes.astype(np.int64)
    for layer, k in enumerate(sizes):
        row = codes[layer]
        if row.size and (int(row.min()) < 0 or int(row.max()) >= k):
            raise CodesFormatError(None, f"layer {layer} has indices outside [0, {k})")
    return codes, header


def _chunks(num_latents: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, num_latents, chunk):
        yield start, min(chunk, num_latents - start)


def _model_counts(model_tables: ModelTables | None, layer: int, k: int) -> np.ndarray | None:
    """The model's table of ``layer`` when it exists and covers a ``k``-entry codebook."""
    if model_tables is None or layer >= len(model_tables.counts):
        return None
    counts = model_tables.counts[layer]
    return counts if counts.size == k else None


def _coded_blocks(constriction, counts: np.ndarray, row: np.ndarray, spans) -> list[bytes]:
    model = _model(constriction, counts)
    coded = []
    for s, n in spans:
        data = _encode_block(constriction, model, row[s : s + n])
        length = _U32.pack(len(data))
        coded.append(length + data + _U32.pack(zlib.crc32(length + data)))
    return coded


#: one layer's stored form: (blocks per chunk, its ``entropy.tables`` entry, estimated header bytes of it)
_Form = tuple[list[bytes], Any, int]


def _layer_forms(
    codes: np.ndarray, sizes: list[int], spans, entropy: bool | str, model_tables: ModelTables | None
) -> list[dict[str, _Form]]:
    """Per layer, every form it may take: ``packed``, ``file`` (a table in the header), ``model``."""
    forms: list[dict[str, _Form]] = []
    for layer, k in enumerate(sizes):
        blocks = [pack_bits(codes[layer, s : s + n], bits_for(k)) for s, n in spans]
        forms.append({"packed": ([b + _U32.pack(zlib.crc32(b)) for b in blocks], None, 0)})
    if not entropy or not spans:
        return forms
    try:
        import constriction
    except ImportError:
        if entropy != "auto":
            raise
        return forms
    for layer, k in enumerate(sizes):
        if k > ENTROPY_MAX_CODEBOOK:
            continue
        counts, text = _best_table(codes[layer], k)
        table = {"precision": int(counts.sum()).bit_length() - 1, "counts": text}
        forms[layer]["file"] = (
            _coded_blocks(constriction, counts, codes[layer], spans),
            table,
            len(text) + 40,
        )
        mt = _model_counts(model_tables, layer, k)
        if mt is not None:
            forms[layer]["model"] = (_coded_blocks(constriction, mt, codes[layer], spans), MODEL_TABLE, 8)
    return forms


def _choose(forms: list[dict[str, _Form]], allowed: tuple[str, ...]) -> list[_Form]:
    """Per layer the cheapest allowed form (blocks + estimated header bytes; per-file tables within
    :data:`TABLE_BUDGET`); a layer with none of ``allowed`` stays packed."""
    budget = TABLE_BUDGET
    chosen = []
    for layer_forms in forms:
        options = [layer_forms[f] for f in allowed if f in layer_forms] or [layer_forms["packed"]]
        options.sort(key=lambda form: sum(map(len, form[0])) + form[2])
        fits = (f for f in options if not isinstance(f[1], dict) or f[2] <= budget)
        form = next(fits, layer_forms["packed"])
        if isinstance(form[1], dict):
            budget -= form[2]
        chosen.append(form)
    return chosen


def _blocks(
    cf: CodesFile, entropy: bool | str, model_tables: ModelTables | None = None, version: int = FORMAT_VERSION
) -> tuple[dict[str, Any], list[list[bytes]]]:
    """Header and, per chunk, the serialised layer blocks (each with its CRC).

    ``entropy="auto"``: of three candidates (all packed; each layer the smaller of packed and a per-file
    table; each layer the smallest of packed, per-file and model table) the one whose whole file, header
    included, is smallest (ties go to the simpler). ``True``: every eligible layer coded, with the
    smaller table."""
    codes, header = _validate_for_write(cf)
    header["version"] = version
    spans = list(_chunks(cf.num_latents, cf.chunk_latents))
    sizes = header["codebook_sizes"]
    forms = _layer_forms(codes, sizes, spans, entropy, model_tables)
    if entropy == "auto":
        plans = [("packed",), ("packed", "file"), ("packed", "file", "model")]
    else:
        plans = [("file", "model")] if entropy else [("packed",)]
    best: tuple[int, dict[str, Any], list[_Form]] | None = None
    for allowed in plans:
        chosen = _choose(forms, allowed)
        h = dict(header)
        tables = [form[1] for form in chosen]
        if any(t is not None for t in tables):
            h["entropy"] = {"coder": ENTROPY_CODER, "tables": tables}
            if MODEL_TABLE in tables:
                h["entropy"]["model_tables_sha256"] = model_tables.sha256
        size = len(encode_header(h)) + sum(len(b) for form in chosen for b in form[0])
        if best is None or size < best[0]:
            best = (size, h, chosen)
    assert best is not None
    _, header, chosen = best
    chunks = [[chosen[layer][0][c] for layer in range(cf.layers)] for c in range(len(spans))]
    return header, chunks


def _deflate(body: bytes) -> bytes:
    """Version 2's header body: raw deflate (level 9, no zlib wrapper) with :data:`HEADER_ZDICT`."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_ZDICT)
    return z.compress(body) + z.flush()


def _inflate(data: bytes, path: Any) -> bytes:
    """Inverse of :func:`_deflate`, refusing more than :data:`MAX_HEADER_BYTES` out (no inflate bomb)."""
    z = zlib.decompressobj(-15, HEADER_ZDICT)
    try:
        body = z.decompress(data, MAX_HEADER_BYTES + 1)
    except zlib.error:
        raise CodesFormatError(path, "header does not inflate (the header is corrupt)") from None
    if len(body) > MAX_HEADER_BYTES or z.unconsumed_tail:
        raise CodesFormatError(path, f"header inflates to more than {MAX_HEADER_BYTES} bytes")
    if not z.eof or z.unused_data:
        raise CodesFormatError(path, "header's deflate stream is incomplete or followed by extra bytes")
    return body


def encode_header(header: dict[str, Any]) -> bytes:
    """Preamble + header + CRC32 (of preamble and header) for a header dict (not validated); the format
    version is ``header["version"]`` (1: plain JSON; 2: deflated JSON, an empty ``meta`` left out)."""
    version = header.get("version", FORMAT_VERSION)
    if version not in WRITABLE_VERSIONS:
        raise CodesFormatError(
            None, f"cannot write format version {version!r} (writable: {WRITABLE_VERSIONS})"
        )
    if version >= 2 and not header.get("meta"):
        header = {k: v for k, v in header.items() if k != "meta"}
    try:
        body = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise CodesFormatError(None, f"header cannot be written as JSON ({err})") from None
    if len(body) > MAX_HEADER_BYTES:
        raise CodesFormatError(None, f"header is {len(body)} bytes, more than the {MAX_HEADER_BYTES} allowed")
    if version >= 2:
        body = _deflate(body)
    head = _PREAMBLE.pack(MAGIC, version, len(body)) + body
    return head + _U32.pack(zlib.crc32(head))


def to_bytes(
    cf: CodesFile,
    entropy: bool | str = "auto",
    model_tables: ModelTables | None = None,
    version: int = FORMAT_VERSION,
) -> bytes:
    """The bytes :func:`write_codes` writes for ``cf``."""
    header, chunks = _blocks(cf, entropy, model_tables, version)
    parts = [encode_header(header)]
    for (_, n), blocks in zip(_chunks(cf.num_latents, cf.chunk_latents), chunks, strict=True):
        parts.append(_U32.pack(n))
        parts.extend(blocks)
    return b"".join(parts)


def write_codes(
    path: str | os.PathLike,
    cf: CodesFile,
    entropy: bool | str = "auto",
    model_tables: ModelTables | None = None,
    version: int = FORMAT_VERSION,
) -> Path:
    """Write ``cf`` to ``path`` atomically (temp file beside it, then rename; nothing left on error).

    ``entropy``: ``"auto"`` (default) stores each layer packed, range-coded with a per-file table (in the
    header) or range-coded with the model's table (``model_tables``, :mod:`sqcodec.entropy_tables`),
    whichever makes the whole file smallest, header included (when constriction is installed); ``True``
    codes every layer with K <= 4096 (with the smaller table); ``False`` bit-packs everything. A file
    that uses ``model_tables`` needs them to be read. ``version``: the format version to write (the
    newest by default; every sqcodec reads the older ones). Invalid codes raise
    :class:`CodesFormatError` before any file exists.
    """
    path = Path(path)
    try:
        data = to_bytes(cf, entropy, model_tables, version)
    except CodesFormatError as err:
        raise CodesFormatError(path, err.problem) from None
    return atomic_write(path, lambda f: f.write(data))


# --------------------------------------------------------------------------------------------- reading


class _Reader:
    """Bounded reads from an open file; any short read is a truncation error naming the file."""

    def __init__(self, f: IO[bytes], path: Any, size: int):
        self.f, self.path, self.size, self.pos = f, path, size, 0

    def read(self, n: int, what: str) -> bytes:
        if n > self.size - self.pos:
            raise CodesFormatError(self.path, f"is truncated (ends inside {what} at byte {self.size})")
        data = self.f.read(n)
        if len(data) != n:  # the file shrank while we read it
            raise CodesFormatError(self.path, f"is truncated (ends inside {what})")
        self.pos += n
        return data

    def u32(self, what: str) -> int:
        return _U32.unpack(self.read(4, what))[0]

    def skip(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise CodesFormatError(self.path, f"is truncated (ends inside {what} at byte {self.size})")
        self.pos += n
        self.f.seek(self.pos)


def _read_header(r: _Reader, header_len: int, version: int) -> dict[str, Any]:
    """The validated header of a version-1 (plain JSON) or version-2 (deflated JSON) file."""
    path = r.path
    if not 2 <= header_len <= MAX_HEADER_BYTES:
        raise CodesFormatError(path, f"header length {header_len} is outside [2, {MAX_HEADER_BYTES}]")
    body = r.read(header_len, "the header")
    crc = r.u32("the header CRC")
    if zlib.crc32(_PREAMBLE.pack(MAGIC, version, header_len) + body) != crc:
        raise CodesFormatError(path, "header CRC mismatch (the header is corrupt)")
    if version >= 2:
        body = _inflate(body, path)

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        h = json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except (ValueError, RecursionError) as err:
        raise CodesFormatError(path, f"header is not valid UTF-8 JSON ({type(err).__name__})") from None
    return _check_header(h, path, version)


def _payload_bounds(h: dict[str, Any]) -> tuple[int, int]:
    """(minimum, exact-or-minus-one) payload size implied by a header; exact when no layer is coded."""
    n, c = h["num_latents"], h["chunk_latents"]
    full, last = divmod(n, c)
    counts = [(full, c)] + ([(1, last)] if last else [])
    lo = 0
    for times, m in counts:
        per_chunk = 4
        for k, t in zip(h["codebook_sizes"], h["tables"], strict=True):
            per_chunk += 8 if t is not None else (m * bits_for(k) + 7) // 8 + 4
        lo += times * per_chunk
    exact = lo if all(t is None for t in h["tables"]) else -1
    return lo, exact


def _check_model(path: Any, h: dict[str, Any], expected_model_hash: str | None) -> None:
    if expected_model_hash is not None and h["model_sha256"] != expected_model_hash:
        raise CodesFormatError(
            path,
            f"codes were made by model {h['model_id']!r} (sha256 {h['model_sha256'][:12]}...), "
            f"this is model sha256 {str(expected_model_hash)[:12]}...",
        )


def _resolve_model_tables(
    path: Any, h: dict[str, Any], want: int, model_tables: ModelTables | None, check_only: bool
) -> list[np.ndarray | str | None]:
    """The header's per-layer tables with :data:`MODEL_TABLE` entries of the first ``want`` layers replaced
    by the model's counts; refuses missing tables (unless ``check_only``) and other tables."""
    tables = list(h["tables"])
    if not any(_is_model(t) for t in tables):
        return tables
    sha = h["entropy"]["model_tables_sha256"]
    needed = any(_is_model(t) for t in tables[:want])
    if model_tables is None:
        if needed and not check_only:
            raise CodesFormatError(
                path,
                f"was coded with the entropy tables of model {h['model_id']!r} (sha256 {sha[:12]}...); "
                "reading it needs them (the entropy_tables.json of that model's folder)",
            )
        return tables
    if model_tables.sha256 != sha:
        raise CodesFormatError(
            path,
            f"was coded with other entropy tables (sha256 {sha[:12]}...) than the model's "
            f"(sha256 {model_tables.sha256[:12]}...)",
        )
    for layer, k in enumerate(h["codebook_sizes"][:want]):
        if _is_model(tables[layer]):
            counts = _model_counts(model_tables, layer, k)
            if counts is None:
                raise CodesFormatError(
                    path, f"layer {layer} ({k} entries) has no matching model entropy table"
                )
            tables[layer] = counts
    return tables


def _read_file(
    r: _Reader,
    version: int,
    header_len: int,
    layers: int | None,
    expected_model_hash: str | None,
    model_tables: ModelTables | None = None,
    check_only: bool = False,
) -> CodesFile:
    """Read a version-1 or -2 file (they differ only in the header). ``check_only``: also accept a file
    whose model-table layers cannot be decoded for want of ``model_tables`` (their lengths and CRCs are
    still checked; their codes are left 0)."""
    path = r.path
    h = _read_header(r, header_len, version)
    _check_model(path, h, expected_model_hash)
    stored, sizes = h["layers"], h["codebook_sizes"]
    want = stored if layers is None else layers
    if not 1 <= want <= stored:
        raise CodesFormatError(path, f"holds {stored} layers; cannot read {layers}")
    tables = _resolve_model_tables(path, h, want, model_tables, check_only)
    lo, exact = _payload_bounds(h)
    payload = r.size - r.pos
    if exact >= 0 and payload != exact:
        what = "truncated" if payload < exact else "followed by trailing garbage"
        raise CodesFormatError(
            path, f"is {what}: the header implies a {exact}-byte payload, the file holds {payload} bytes"
        )
    if payload < lo:
        raise CodesFormatError(
            path, f"is truncated: the header implies at least {lo} payload bytes, got {payload}"
        )
    decodable = [isinstance(t, np.ndarray) and i < want for i, t in enumerate(tables)]
    constriction = _constriction(path) if any(decodable) else None
    models = [_model(constriction, t) if ok else None for t, ok in zip(tables, decodable, strict=True)]
    num = h["num_latents"]
    codes = np.empty((want, num), dtype=np.int64)
    for ci, (start, n) in enumerate(_chunks(num, h["chunk_latents"])):
        got = r.u32(f"the latent count of chunk {ci}")
        if got != n:
            raise CodesFormatError(path, f"chunk {ci} says {got} latents, the header implies {n}")
        for layer, k in enumerate(sizes):
            where = f"chunk {ci} layer {layer}"
            if tables[layer] is None:
                nbytes = (n * bits_for(k) + 7) // 8
                if layer >= want:
                    r.skip(nbytes + 4, where)
                    continue
                block = r.read(nbytes, where)
                if zlib.crc32(block) != r.u32(f"the CRC of {where}"):
                    raise CodesFormatError(path, f"CRC mismatch in {where} (the data is corrupt)")
                try:
                    values = unpack_bits(block, bits_for(k), n)
                except ValueError as err:
                    raise CodesFormatError(path, f"{where}: {err}") from None
            else:
                length_bytes = r.read(4, f"the length of {where}")
                m = _U32.unpack(length_bytes)[0]
                if m % 4:
                    raise CodesFormatError(path, f"{where}: coded length {m} is not a multiple of 4")
                if layer >= want:
                    r.skip(m + 4, where)
                    continue
                block = r.read(m, where)
                if zlib.crc32(length_bytes + block) != r.u32(f"the CRC of {where}"):
                    raise CodesFormatError(path, f"CRC mismatch in {where} (the data is corrupt)")
                if models[layer] is None:  # check_only and no model tables: the CRC is all we can check
                    continue
                try:
                    values = _decode_block(constriction, models[layer], block, n)
                except Exception as err:  # constriction raises its own types on bad data
                    raise CodesFormatError(path, f"{where}: cannot decode ({err})") from None
            if n and (int(values.min()) < 0 or int(values.max()) >= k):
                raise CodesFormatError(path, f"{where} holds an index >= the codebook size {k}")
            codes[layer, start : start + n] = values
    if r.pos != r.size:
        raise CodesFormatError(path, f"has {r.size - r.pos} bytes of trailing garbage after the last chunk")
    return CodesFile(
        codes=codes,
        codebook_sizes=list(sizes[:want]),
        model_id=h["model_id"],
        model_sha256=h["model_sha256"],
        preset=h["preset"],
        sample_rate=h["sample_rate"],
        hop=h["hop"],
        latent_rate=float(h["latent_rate"]),
        orig_sample_rate=h["orig_sample_rate"],
        orig_channels=h["orig_channels"],
        orig_length=h["orig_length"],
        gain=float(h["gain"]),
        chunk_latents=h["chunk_latents"],
        meta=h["meta"],
        entropy_tables=[t if isinstance(t, np.ndarray) else None for t in tables[:want]],
    )


#: the format versions this sqcodec reads, kept forever (the version is a promise)
_READERS = (1, 2)


def _preamble(f: IO[bytes], path: Any, size: int) -> tuple[_Reader, int, int]:
    r = _Reader(f, path, size)
    if r.size < _PREAMBLE.size:
        start = f.read(4)
        if not MAGIC.startswith(start):
            raise CodesFormatError(path, f"is not a .codes file (magic {start!r}, expected {MAGIC!r})")
        raise CodesFormatError(path, f"is truncated ({r.size} bytes, shorter than the 9-byte preamble)")
    magic, version, header_len = _PREAMBLE.unpack(r.read(_PREAMBLE.size, "the preamble"))
    if magic != MAGIC:
        raise CodesFormatError(path, f"is not a .codes file (magic {magic!r}, expected {MAGIC!r})")
    if version not in _READERS:
        if version > FORMAT_VERSION:
            raise CodesFormatError(
                path, f"is format version {version}, newer than this sqcodec reads (<= {FORMAT_VERSION})"
            )
        raise CodesFormatError(path, f"has unknown format version {version}")
    return r, version, header_len


@contextlib.contextmanager
def _open(path: str | os.PathLike) -> Iterator[tuple[_Reader, int, int]]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as err:
        raise CodesFormatError(path, f"cannot be opened ({err.strerror or err})") from None
    with f:
        yield _preamble(f, path, os.fstat(f.fileno()).st_size)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The validated JSON header of a ``.codes`` file (payload not read); ``entropy`` tables as given."""
    with _open(path) as (r, version, header_len):
        h = _read_header(r, header_len, version)
    h.pop("tables")
    return h


def _check_layers(path: Any, layers: Any) -> None:
    if layers is not None and (not _is_int(layers) or layers < 1):
        raise CodesFormatError(path, f"layers must be a positive integer, got {layers!r}")


def read_codes(
    path: str | os.PathLike,
    layers: int | None = None,
    expected_model_hash: str | None = None,
    model_tables: ModelTables | None = None,
) -> CodesFile:
    """Read a ``.codes`` file; ``layers``: keep only the first ``layers`` (the rest are skipped unread).

    ``expected_model_hash``: the sha256 of the model that will decode; a file made by another model raises
    (checked right after the header). ``model_tables``: the model's entropy tables
    (:mod:`sqcodec.entropy_tables`), needed for a file coded with them; missing or other tables raise.
    Every problem raises :class:`CodesFormatError` naming ``path``.
    """
    _check_layers(path, layers)
    with _open(path) as (r, version, header_len):
        return _read_file(r, version, header_len, layers, expected_model_hash, model_tables)


def check_codes(path: str | os.PathLike, model_tables: ModelTables | None = None) -> dict[str, Any]:
    """Read every block of a ``.codes`` file and check every length and CRC (decoding every layer it can:
    layers coded with the model's tables only when ``model_tables`` are given); returns the header as
    :func:`read_header` does. For ``sqcodec info``, which must work without the model."""
    h = read_header(path)
    with _open(path) as (r, version, header_len):
        _read_file(r, version, header_len, None, None, model_tables, check_only=True)
    return h


def from_bytes(
    data: bytes,
    name: str = "<bytes>",
    layers: int | None = None,
    expected_model_hash: str | None = None,
    model_tables: ModelTables | None = None,
) -> CodesFile:
    """:func:`read_codes` on the bytes of a file (``name`` is used in error messages)."""
    _check_layers(name, layers)
    r, version, header_len = _preamble(io.BytesIO(data), name, len(data))
    return _read_file(r, version, header_len, layers, expected_model_hash, model_tables)
