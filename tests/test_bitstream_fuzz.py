"""Property tests of the .codes reader: mutated files and random headers give CodesFormatError or the
original decode; never another exception, never a silently different decode, never a huge allocation."""

from __future__ import annotations

import base64
import struct
import tracemalloc

import numpy as np
import pytest
from helpers import codes_bytes, codes_header, codes_payload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqcodec import bitstream as bs
from sqcodec.bitstream import CodesFile, CodesFormatError

SHA = "ab" * 32
#: reading a fuzzed file (a few hundred bytes) may never trace more than this (header caps hold)
PEAK_LIMIT = 64 << 20


def _cf(sizes, n, chunk, seed, skew) -> CodesFile:
    rng = np.random.default_rng(seed)
    rows = []
    for k in sizes:
        if skew:
            rows.append(np.clip(np.round(rng.normal(k / 2, max(k / 30, 0.5), n)), 0, k - 1).astype(np.int64))
        else:
            rows.append(rng.integers(0, k, n))
    codes = np.stack(rows) if n else np.zeros((len(sizes), 0), np.int64)
    return CodesFile(
        codes=codes,
        codebook_sizes=list(sizes),
        model_id="m",
        model_sha256=SHA,
        preset="p",
        sample_rate=16000,
        hop=160,
        latent_rate=50.0,
        orig_sample_rate=48000,
        orig_channels=1,
        orig_length=n * 960,
        chunk_latents=chunk,
    )


files = st.builds(
    _cf,
    sizes=st.lists(st.sampled_from([2, 3, 5, 16, 64, 256, 1000, 1024]), min_size=1, max_size=4),
    n=st.integers(0, 40),
    chunk=st.integers(1, 16),
    seed=st.integers(0, 2**32 - 1),
    skew=st.booleans(),
)

_where = st.sampled_from(["any", "payload", "payload"])
mutation = st.one_of(
    st.tuples(st.just("flip"), _where, st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("set"), _where, st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), _where, st.integers(0, 10**6), st.integers(1, 8)),
    st.tuples(st.just("insert"), _where, st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), _where, st.integers(0, 10**6), st.just(0)),
)


def _mutate(data: bytes, ops) -> bytes:
    """Apply byte mutations; ``payload`` ones land after the header (where most are caught by layer CRCs)."""
    b = bytearray(data)
    payload_start = 13 + struct.unpack("!I", data[5:9])[0]
    for op, where, pos, arg in ops:
        if not b:
            break
        lo = payload_start if where == "payload" and len(b) > payload_start else 0
        i = lo + pos % (len(b) - lo)
        if op == "flip":
            b[i] ^= 1 << arg
        elif op == "set":
            b[i] = arg
        elif op == "delete":
            del b[i : i + arg]
        elif op == "insert":
            b[i:i] = arg
        else:
            del b[i:]
    return bytes(b)


def _read_bounded(data: bytes, **kw):
    tracemalloc.start()
    try:
        try:
            got = bs.from_bytes(data, "fuzz.codes", **kw)
        except CodesFormatError as err:
            assert "fuzz.codes" in str(err) and "\n" not in str(err)
            got = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT
    return got


def _tables(cf: CodesFile):
    """Model entropy tables fitted to ``cf``'s own codes (so a coded file uses them)."""
    from sqcodec.entropy_tables import build_tables, code_histograms

    return build_tables(code_histograms([cf.codes], cf.codebook_sizes))


def _check_mutation(cf: CodesFile, entropy: bool, ops, model: bool = False) -> None:
    tables = _tables(cf) if model else None
    data = bs.to_bytes(cf, entropy=entropy, model_tables=tables)
    bad = _mutate(data, ops)
    got = _read_bounded(bad, model_tables=tables)
    if got is not None:  # an undetected change must leave the decode untouched
        assert np.array_equal(got.codes, cf.codes)
        assert got.header() == cf.header()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cf=files, entropy=st.booleans(), ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_files_fail_cleanly(cf, entropy, ops):
    _check_mutation(cf, entropy, ops)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cf=files, entropy=st.booleans(), ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_files_fail_cleanly_10k(cf, entropy, ops):
    _check_mutation(cf, entropy, ops)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cf=files, ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_model_coded_files_fail_cleanly(cf, ops):
    """The same property for files coded with model tables (``entropy=True``: every layer coded)."""
    _check_mutation(cf, True, ops, model=True)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cf=files, ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_model_coded_files_fail_cleanly_10k(cf, ops):
    _check_mutation(cf, True, ops, model=True)


# ----------------------------------------------------------------------------------------- random headers

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)


def _containers(children):
    return st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    )


json_values = st.recursive(json_scalars, _containers, max_leaves=8)
big_ints = st.one_of(
    st.integers(-3, 70), st.integers(0, 2**64), st.sampled_from([2**20, 2**20 + 1, 2**27, 2**31, 10**400])
)


@st.composite
def headers(draw):
    """(header, payload) of a valid file with a few header fields replaced by absurd or ill-typed values,
    or a plausible header over random payload bytes."""
    cf = draw(files)
    version = draw(st.sampled_from(bs.WRITABLE_VERSIONS))
    data = bs.to_bytes(cf, entropy=draw(st.booleans()), version=version)
    h = codes_header(data)
    payload = codes_payload(data) if draw(st.booleans()) else draw(st.binary(max_size=300))
    for key in draw(st.lists(st.sampled_from(sorted(h)), max_size=3)):
        h[key] = draw(st.one_of(big_ints, json_values, st.lists(big_ints, max_size=6)))
    if draw(st.integers(0, 5)) == 5:
        table = st.fixed_dictionaries(
            {
                "precision": st.integers(0, 20),
                "counts": st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()),
            }
        )
        h["entropy"] = {
            "coder": bs.ENTROPY_CODER,
            "tables": draw(st.lists(st.one_of(st.none(), table, json_values), max_size=5)),
        }
    if draw(st.integers(0, 5)) == 5:
        h[draw(st.text(max_size=5))] = draw(json_values)
    return h, payload, version


def _check_header(header_payload, layers) -> None:
    header, payload, version = header_payload
    got = _read_bounded(codes_bytes(header, payload, version), layers=layers)
    if got is not None:  # accepted: a consistent header, and codes that respect it
        assert got.codes.shape == (min(layers or header["layers"], header["layers"]), header["num_latents"])
        assert got.header()["codebook_sizes"] == header["codebook_sizes"][: got.layers]
        for row, k in zip(got.codes, got.codebook_sizes, strict=True):
            assert row.size == 0 or (row.min() >= 0 and row.max() < k)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_payload=headers(), layers=st.one_of(st.none(), st.integers(1, 5)))
def test_random_headers_fail_cleanly(header_payload, layers):
    _check_header(header_payload, layers)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_payload=headers(), layers=st.one_of(st.none(), st.integers(1, 5)))
def test_random_headers_fail_cleanly_10k(header_payload, layers):
    _check_header(header_payload, layers)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64), version=st.sampled_from([b"\x01", b"\x02"]))
def test_random_bytes_fail_cleanly(data, version):
    assert _read_bounded(b"SQCD" + version + data) is None or len(data) > 8


@settings(max_examples=300, deadline=None)
@given(
    cf=files, entropy=st.sampled_from([False, True, "auto"]), model=st.booleans(), layers=st.integers(1, 4)
)
def test_round_trip_property(cf, entropy, model, layers):
    layers = min(layers, cf.layers)
    tables = _tables(cf) if model else None
    data = bs.to_bytes(cf, entropy=entropy, model_tables=tables)
    got = bs.from_bytes(data, layers=layers, model_tables=tables)
    assert np.array_equal(got.codes, cf.codes[:layers])
    assert got.codebook_sizes == cf.codebook_sizes[:layers]
