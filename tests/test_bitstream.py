"""The .codes container: bit packing, round trips, layer scalability, every error, corruption detection."""

from __future__ import annotations

import json
import os
import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import codes_bytes, codes_header

from sqcodec import bitstream as bs
from sqcodec.bitstream import (
    CodesFile,
    CodesFormatError,
    bits_for,
    file_bits_per_second,
    pack_bits,
    read_codes,
    read_header,
    unpack_bits,
    write_codes,
)

SHA = "0123456789abcdef" * 4


def make_cf(sizes, n, chunk=1024, seed=0, codes=None) -> CodesFile:
    rng = np.random.default_rng(seed)
    if codes is None:
        codes = np.stack([rng.integers(0, k, n) for k in sizes]) if n else np.zeros((len(sizes), 0), int)
    return CodesFile(
        codes=codes,
        codebook_sizes=list(sizes),
        model_id="sqvae-vctk",
        model_sha256=SHA,
        preset="vctk-16k",
        sample_rate=16000,
        hop=200,
        latent_rate=40.0,
        orig_sample_rate=44100,
        orig_channels=2,
        orig_length=123456,
        gain=0.5,
        chunk_latents=chunk,
        meta={"encoder": "test"},
    )


def skewed_cf(layers=4, n=3000, k=256, chunk=512, seed=1) -> CodesFile:
    rng = np.random.default_rng(seed)
    codes = np.clip(np.round(rng.normal(k / 2, k / 40, (layers, n))), 0, k - 1).astype(np.int64)
    return make_cf([k] * layers, n, chunk=chunk, codes=codes)


def raw_file(
    header: dict, payload: bytes = b"", version: int | None = None, body: bytes | None = None
) -> bytes:
    """A file with a chosen header (valid CRC) and payload, bypassing the writer's checks; ``body``: the
    exact header bytes of a version-1 file (or, raw-deflated, of a version-2 one)."""
    if body is None:
        return codes_bytes(header, payload, version)
    version = version or 1
    if version >= 2:
        body = deflate(body)
    head = struct.pack("!4sBI", b"SQCD", version, len(body)) + body
    return head + struct.pack("!I", zlib.crc32(head)) + payload


def assert_same(a: CodesFile, b: CodesFile) -> None:
    assert np.array_equal(a.codes, b.codes)
    assert a.header() == b.header()


# ------------------------------------------------------------------------------------------ bit packing


@pytest.mark.parametrize("bits", [1, 2, 3, 7, 8, 9, 10, 13, 17, 20, 31, 32])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 1000, (1 << 16) + 3])
def test_pack_unpack_round_trip(bits, count):
    rng = np.random.default_rng(bits * 1000 + count)
    values = rng.integers(0, 1 << bits, count, dtype=np.int64)
    data = pack_bits(values, bits)
    assert len(data) == (count * bits + 7) // 8
    assert np.array_equal(unpack_bits(data, bits, count), values)


def test_pack_bits_is_lsb_first():
    # 1,2,3,4,5 at 3 bits: stream 100 010 110 001 101 (+0) -> 0xd1 0x58
    assert pack_bits([1, 2, 3, 4, 5], 3) == bytes([0xD1, 0x58])


def test_pack_rejects_values_out_of_range():
    with pytest.raises(ValueError):
        pack_bits([8], 3)
    with pytest.raises(ValueError):
        pack_bits([-1], 3)


def test_unpack_rejects_wrong_size_and_nonzero_padding():
    with pytest.raises(ValueError, match="expected"):
        unpack_bits(b"\x00\x00", 3, 1)
    with pytest.raises(ValueError, match="padding"):
        unpack_bits(bytes([0x80]), 3, 1)


def test_bits_for():
    assert [bits_for(k) for k in (2, 3, 4, 5, 64, 256, 512, 1000, 1024, 1025)] == [
        1,
        2,
        2,
        3,
        6,
        8,
        9,
        10,
        10,
        11,
    ]


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("k", [2, 3, 64, 256, 512, 1000, 1024, 1 << 20])
@pytest.mark.parametrize("layers", [1, 3, 8])
@pytest.mark.parametrize("entropy", [False, True])
def test_round_trip(tmp_path, k, layers, entropy):
    cf = make_cf([k] * layers, 777, chunk=100, seed=k + layers)
    path = write_codes(tmp_path / "a.codes", cf, entropy=entropy)
    got = read_codes(path)
    assert_same(got, cf)
    assert got.codes.dtype == np.int64
    coded = entropy and k <= bs.ENTROPY_MAX_CODEBOOK
    assert [t is not None for t in got.entropy_tables] == [coded] * layers


@pytest.mark.parametrize("n", [0, 1, 2, 1023, 1024, 1025])
@pytest.mark.parametrize("chunk", [1, 7, 1024])
@pytest.mark.parametrize("entropy", [False, True])
def test_round_trip_lengths_and_chunks(tmp_path, n, chunk, entropy):
    cf = make_cf([3, 1024, 64], n, chunk=chunk, seed=n + chunk)
    got = read_codes(write_codes(tmp_path / "a.codes", cf, entropy=entropy))
    assert_same(got, cf)
    assert got.codes.shape == (3, n)


def test_mixed_codebook_sizes_and_header_fields(tmp_path):
    cf = make_cf([2, 3, 1000, 1024, 4097], 500, chunk=64)
    path = write_codes(tmp_path / "a.codes", cf)
    got = read_codes(path)
    assert_same(got, cf)
    assert (got.orig_channels, got.orig_sample_rate, got.orig_length, got.gain) == (2, 44100, 123456, 0.5)
    assert got.meta == {"encoder": "test"}
    header = read_header(path)
    assert header["num_latents"] == 500 and header["codebook_sizes"] == [2, 3, 1000, 1024, 4097]


def inflate(body: bytes) -> bytes:
    """Version 2's header body, inflated independently of the reader."""
    z = zlib.decompressobj(-15, bs.HEADER_ZDICT)
    out = z.decompress(body)
    assert z.eof and not z.unused_data
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_header_is_sorted_json_after_preamble(tmp_path, version):
    path = write_codes(tmp_path / "a.codes", make_cf([8], 5), entropy=False, version=version)
    data = path.read_bytes()
    magic, got_version, n = struct.unpack("!4sBI", data[:9])
    assert (magic, got_version) == (b"SQCD", version)
    body = data[9 : 9 + n]
    header = json.loads(body if version == 1 else inflate(body))
    assert list(header) == sorted(header) and header["version"] == version
    assert struct.unpack("!I", data[9 + n : 13 + n])[0] == zlib.crc32(data[: 9 + n])


def test_version_2_is_the_default_and_much_smaller(tmp_path):
    cf = make_cf([256] * 8, 141, chunk=938)
    v1 = write_codes(tmp_path / "v1.codes", cf, entropy=False, version=1).read_bytes()
    v2 = write_codes(tmp_path / "v2.codes", cf, entropy=False).read_bytes()
    assert v2[4] == bs.FORMAT_VERSION == 2
    assert v1[9 + struct.unpack("!I", v1[5:9])[0] + 4 :] == v2[9 + struct.unpack("!I", v2[5:9])[0] + 4 :]
    h1, h2 = struct.unpack("!I", v1[5:9])[0], struct.unpack("!I", v2[5:9])[0]
    assert h2 < 140 < 300 < h1  # about 110 vs 330 bytes for this header
    assert_same(read_codes(tmp_path / "v1.codes"), read_codes(tmp_path / "v2.codes"))


def test_version_2_leaves_out_an_empty_meta(tmp_path):
    import dataclasses

    cf = dataclasses.replace(make_cf([16, 16], 10), meta={})
    data = write_codes(tmp_path / "a.codes", cf).read_bytes()
    assert "meta" not in codes_header(data)
    assert read_header(tmp_path / "a.codes")["meta"] == {} and read_codes(tmp_path / "a.codes").meta == {}
    # version 1 must always carry it
    v1 = raw_file({k: v for k, v in {**cf.header(), "version": 1}.items() if k != "meta"})
    _err(tmp_path, v1, re.escape("missing ['meta']"))


def raw_v2(body: bytes) -> bytes:
    head = struct.pack("!4sBI", b"SQCD", 2, len(body)) + body
    return head + struct.pack("!I", zlib.crc32(head))


def deflate(body: bytes, zdict: bytes = bs.HEADER_ZDICT) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    return z.compress(body) + z.flush()


def test_version_2_header_errors(tmp_path):
    good = json.dumps({**make_cf([4], 0).header(), "version": 2}, sort_keys=True).encode()
    ok = tmp_path / "ok.codes"
    ok.write_bytes(raw_v2(deflate(good)))
    assert read_codes(ok).num_latents == 0
    _err(tmp_path, raw_v2(b"\xff\xff\xff\xff"), "does not inflate")
    _err(tmp_path, raw_v2(deflate(good)[:-3]), "incomplete")
    _err(tmp_path, raw_v2(deflate(good) + b"xx"), "extra bytes")
    _err(tmp_path, raw_v2(good), "does not inflate|JSON")  # plain JSON under version 2
    _err(tmp_path, raw_v2(deflate(good, zdict=b"another dictionary")), "does not inflate|JSON")
    # an inflate bomb: 20 KiB of deflate that would expand to 20 MiB stops at the header limit
    bomb = deflate(b"[" + b" " * (20 << 20) + b"]")
    assert len(bomb) < 64 << 10
    _err(tmp_path, raw_v2(bomb), "more than 65536 bytes")
    # a version-1 header under version 2 says so
    old = json.dumps({**make_cf([4], 0).header(), "version": 1}).encode()
    _err(tmp_path, raw_v2(deflate(old)), "version 1")


def test_packed_payload_layout_is_layer_major(tmp_path):
    cf = make_cf([8, 4], 5, chunk=3)
    data = write_codes(tmp_path / "a.codes", cf, entropy=False).read_bytes()
    n = struct.unpack("!I", data[5:9])[0]
    p = data[13 + n :]
    expected = b""
    for s, m in ((0, 3), (3, 2)):
        expected += struct.pack("!I", m)
        for layer, bits in ((0, 3), (1, 2)):
            block = pack_bits(cf.codes[layer, s : s + m], bits)
            expected += block + struct.pack("!I", zlib.crc32(block))
    assert p == expected


# ------------------------------------------------------------------------------------------- bitrates


def test_bits_per_second_is_latent_rate_times_bits():
    cf = make_cf([1024] * 8, 10)
    assert cf.bits_per_second() == 40.0 * 80
    assert cf.bits_per_second(layers=3) == 40.0 * 30
    assert make_cf([3, 1000], 10).bits_per_second() == 40.0 * 12
    with pytest.raises(ValueError):
        cf.bits_per_second(layers=9)


def test_file_bitrate_of_packed_file_is_close_to_nominal(tmp_path):
    cf = make_cf([1024] * 8, 40 * 300, chunk=1024)  # five minutes
    path = write_codes(tmp_path / "a.codes", cf, entropy=False)
    actual = file_bits_per_second(path)
    assert cf.bits_per_second() < actual < cf.bits_per_second() * 1.01


# ------------------------------------------------------------------------------------- entropy coding


def test_entropy_auto_codes_only_where_it_pays(tmp_path):
    cf = skewed_cf(layers=2)
    cf.codes[1] = np.random.default_rng(3).integers(0, 256, cf.num_latents)  # uniform: coding cannot pay
    path = write_codes(tmp_path / "a.codes", cf)
    got = read_codes(path)
    assert_same(got, cf)
    assert [t is not None for t in got.entropy_tables] == [True, False]
    packed = write_codes(tmp_path / "b.codes", cf, entropy=False)
    assert path.stat().st_size < packed.stat().st_size


def test_entropy_auto_on_uniform_codes_stays_packed(tmp_path):
    cf = make_cf([1024] * 2, 2000)
    a = write_codes(tmp_path / "a.codes", cf)
    b = write_codes(tmp_path / "b.codes", cf, entropy=False)
    assert a.read_bytes() == b.read_bytes()
    assert read_header(a)["entropy"] is None


def test_entropy_table_is_integer_and_dyadic():
    hist = np.bincount(np.concatenate([np.zeros(10**6, int), np.arange(4096)]))  # one dominant, 4095 rare
    counts = bs.dyadic_table(hist, 13)
    assert counts.sum() == 1 << 13 and counts.min() >= 1 and counts.dtype == np.int64
    assert bs.dyadic_table(np.bincount([5, 5, 5], minlength=8), 4).tolist() == [0] * 5 + [16, 0, 0]
    counts, text = bs._best_table(np.array([5, 5, 5, 1]), 8)
    assert counts.sum() == 1 << int(counts.sum()).bit_length() - 1 and counts[5] > counts[1] > 0


@pytest.mark.parametrize("values", [[1], [1, 2, 3, 4, 5], [65537, 1, 1, 300], list(range(1, 2000))])
def test_gamma_round_trip(values):
    data = bs._gamma_encode(values)
    assert bs._gamma_decode(data, len(values)).tolist() == values
    with pytest.raises(ValueError):
        bs._gamma_decode(data + b"\x00", len(values))
    with pytest.raises(ValueError):
        bs._gamma_decode(data[:-1], len(values))


def test_gamma_rejects_overlong_code():
    with pytest.raises(ValueError, match="too long"):
        bs._gamma_decode(b"\x00" * 8, 1)


def test_entropy_gain_on_skewed_codes(tmp_path):
    """A minute of peaked codes (8 bits of entropy of 10) gets smaller, table included (~6%)."""
    rng = np.random.default_rng(0)
    n = 40 * 60
    codes = np.clip(np.round(rng.normal(512, 64, (4, n))), 0, 1023).astype(np.int64)
    cf = make_cf([1024] * 4, n, codes=codes)
    coded = write_codes(tmp_path / "a.codes", cf).stat().st_size
    packed = write_codes(tmp_path / "b.codes", cf, entropy=False).stat().st_size
    assert coded < 0.96 * packed
    assert_same(read_codes(tmp_path / "a.codes"), cf)


def test_entropy_coder_is_bit_exact_golden():
    """Pins constriction's coding of an integer table: a change of coder behaviour breaks old files."""
    constriction = pytest.importorskip("constriction")
    counts = np.array([30000, 20000, 10000, 5000, 536, 0, 0, 0], dtype=np.int64)
    symbols = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 1, 0, 2, 4, 3, 1] * 4)
    model = bs._model(constriction, counts)
    data = bs._encode_block(constriction, model, symbols)
    assert data.hex() == (
        "56575e114ce2003420d7f23c39230dac0e0e5a8ffff52afff67f4f0a9013285a"
        "ff37bc8f55e89fdd98fec4f5a051ed97f976f6fa43f17489"
    )
    assert bs._decode_block(constriction, model, data, symbols.size).tolist() == symbols.tolist()


# ------------------------------------------------------------------------------------- fewer layers


def _block_spans(data: bytes) -> list[tuple[int, int, int]]:
    """(layer, start, end) byte spans of every layer block (data, length and CRC) of a file."""
    header = codes_header(data)
    pos = 13 + struct.unpack("!I", data[5:9])[0]
    tables = (header["entropy"] or {}).get("tables") or [None] * header["layers"]
    spans = []
    for s in range(0, header["num_latents"], header["chunk_latents"]):
        n = min(header["chunk_latents"], header["num_latents"] - s)
        pos += 4
        for layer, k in enumerate(header["codebook_sizes"]):
            size = (
                (n * bits_for(k) + 7) // 8 + 4
                if tables[layer] is None
                else 8 + struct.unpack("!I", data[pos : pos + 4])[0]
            )
            spans.append((layer, pos, pos + size))
            pos += size
    assert pos == len(data)
    return spans


@pytest.mark.parametrize("entropy", [False, True])
def test_read_fewer_layers_never_touches_later_layers(tmp_path, entropy):
    cf = skewed_cf(layers=8, n=1000, chunk=300)
    path = write_codes(tmp_path / "a.codes", cf, entropy=entropy)
    data = bytearray(path.read_bytes())
    assert (codes_header(data)["entropy"] is not None) == entropy
    for layer, start, end in _block_spans(bytes(data)):
        if layer >= 3:  # scramble the data bytes of later layers (keep coded lengths so they can be skipped)
            first = start + 4 if entropy else start
            data[first:end] = bytes((b ^ 0x5A) for b in data[first:end])
    path.write_bytes(bytes(data))
    got = read_codes(path, layers=3)
    assert np.array_equal(got.codes, cf.codes[:3])
    assert got.codebook_sizes == cf.codebook_sizes[:3] and got.layers == 3
    with pytest.raises(CodesFormatError, match="CRC mismatch in chunk 0 layer 3"):
        read_codes(path, layers=4)


def test_read_fewer_layers_reads_fewer_bytes(tmp_path, monkeypatch):
    cf = make_cf([1024] * 8, 4000, chunk=500)
    path = write_codes(tmp_path / "a.codes", cf, entropy=False)
    read = []
    original = bs._Reader.read

    def counting(self, n, what):
        read.append(n)
        return original(self, n, what)

    monkeypatch.setattr(bs._Reader, "read", counting)
    read_codes(path, layers=2)
    assert sum(read) < path.stat().st_size * 2 / 8 + 1000


@pytest.mark.parametrize("layers", [0, 9, -1, 2.0])
def test_read_bad_layer_count(tmp_path, layers):
    path = write_codes(tmp_path / "a.codes", make_cf([4] * 8, 10))
    with pytest.raises(CodesFormatError, match="a.codes"):
        read_codes(path, layers=layers)


# ------------------------------------------------------------------------------------------- errors


@pytest.fixture
def good(tmp_path) -> tuple[Path, bytes]:
    path = write_codes(tmp_path / "good.codes", make_cf([5, 256], 20, chunk=8), entropy=False)
    return path, path.read_bytes()


def _err(tmp_path, data: bytes, match: str, **kw):
    path = tmp_path / "bad.codes"
    path.write_bytes(data)
    with pytest.raises(CodesFormatError, match=match) as info:
        read_codes(path, **kw)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    return info.value


def test_missing_and_empty_file(tmp_path):
    with pytest.raises(CodesFormatError, match="nope.codes: cannot be opened"):
        read_codes(tmp_path / "nope.codes")
    _err(tmp_path, b"", "truncated")
    _err(tmp_path, b"RIFF", "not a .codes file")


def test_wrong_magic(tmp_path, good):
    _err(tmp_path, b"ECDC" + good[1][4:], "not a .codes file")


def test_newer_and_unknown_version(tmp_path, good):
    data = good[1]
    _err(tmp_path, data[:4] + b"\x03" + data[5:], "version 3, newer than this sqcodec reads")
    _err(tmp_path, data[:4] + b"\x00" + data[5:], "unknown format version 0")


def test_header_crc_mismatch(tmp_path, good):
    data = bytearray(good[1])
    data[20] ^= 0x01
    _err(tmp_path, bytes(data), "header CRC mismatch")


def test_header_length_capped(tmp_path, good):
    data = good[1]
    _err(tmp_path, data[:5] + struct.pack("!I", (1 << 16) + 1) + data[9:], "header length")
    _err(tmp_path, data[:5] + struct.pack("!I", 0xFFFFFFFF) + data[9:], "header length")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe{}", b"[1, 2]", b'"x"', b"null", b"[" * 5000 + b"]" * 5000, b'{"a": NaN}'],
)
@pytest.mark.parametrize("version", [1, 2])
def test_malformed_or_non_object_json(tmp_path, body, version):
    _err(tmp_path, raw_file({}, body=body, version=version), "header")


def _header(**changes) -> dict:
    h = make_cf([5, 256], 20, chunk=8).header()
    h.update(changes)
    return h


@pytest.mark.parametrize(
    "changes",
    [
        {"num_latents": -1},
        {"num_latents": 1 << 40},
        {"num_latents": bs.MAX_CODES // 2 + 1},
        {"num_latents": 21},
        {"num_latents": 19},
        {"num_latents": True},
        {"chunk_latents": 0},
        {"chunk_latents": 7},
        {"chunk_latents": 1 << 30},
        {"layers": 65, "codebook_sizes": [4] * 65},
        {"layers": 3},
        {"layers": 0, "codebook_sizes": []},
        {"codebook_sizes": [1, 256]},
        {"codebook_sizes": [5, (1 << 20) + 1]},
        {"codebook_sizes": [5, 256.0]},
        {"codebook_sizes": [5, 512]},
        {"codebook_sizes": "5,256"},
        {"sample_rate": 0},
        {"hop": -200},
        {"latent_rate": float("inf")},
        {"latent_rate": 0},
        {"latent_rate": 10**400},
        {"gain": 10**400},
        {"num_latents": 10**400},
        {"gain": -1.0},
        {"orig_channels": 0},
        {"orig_length": -5},
        {"model_sha256": "abc"},
        {"model_sha256": SHA.upper()},
        {"model_id": 5},
        {"version": 3},
        {"meta": []},
        {"entropy": {"coder": "zip", "tables": [None, None]}},
        {"entropy": {"coder": bs.ENTROPY_CODER, "tables": [None, None]}},
        {"entropy": {"coder": bs.ENTROPY_CODER, "tables": [{"precision": 4, "counts": "!!!"}, None]}},
        {"entropy": {"coder": bs.ENTROPY_CODER, "tables": [{"precision": 17, "counts": ""}, None]}},
        {"entropy": {"coder": bs.ENTROPY_CODER, "tables": [{"precision": 4, "counts": "gA=="}, None]}},
        {"entropy": {"coder": bs.ENTROPY_CODER, "tables": ["AAAA", None]}},
        {"extra_field": 1},
    ],
)
def test_header_that_lies_or_is_absurd(tmp_path, good, changes):
    data = good[1]
    n = struct.unpack("!I", data[5:9])[0]
    payload = data[13 + n :]
    h = _header(**changes)
    if changes.get("entropy") is None and "entropy" in changes:
        h["entropy"] = None
    h = {k: v for k, v in h.items() if k in changes or k in bs._HEADER_KEYS}
    _err(tmp_path, raw_file(h, payload), "header|truncated|trailing|payload|chunk")


def test_missing_header_field(tmp_path, good):
    h = _header()
    del h["hop"]
    _err(tmp_path, raw_file(h, b""), "missing \\['hop'\\]")


def test_huge_claims_are_rejected_before_allocating(tmp_path):
    h = _header(num_latents=bs.MAX_CODES // 2, chunk_latents=bs.MAX_CHUNK_LATENTS, codebook_sizes=[2, 2])
    path = tmp_path / "bomb.codes"
    path.write_bytes(raw_file(h, b"\x00" * 64))
    tracemalloc.start()
    try:
        with pytest.raises(CodesFormatError, match="truncated"):
            read_codes(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_chunk_latent_count_that_lies(tmp_path, good):
    data = bytearray(good[1])
    pos = 13 + struct.unpack("!I", data[5:9])[0]
    data[pos : pos + 4] = struct.pack("!I", 7)
    _err(tmp_path, bytes(data), "chunk 0 says 7 latents, the header implies 8")


def test_layer_crc_mismatch(tmp_path, good):
    data = bytearray(good[1])
    data[-6] ^= 0x10  # inside the last layer's data
    _err(tmp_path, bytes(data), "CRC mismatch in chunk 2 layer 1")


def test_index_beyond_codebook_with_valid_crc(tmp_path):
    h = make_cf([3], 2, chunk=2).header()
    block = pack_bits([1, 3], 2)  # 3 >= K=3 fits in 2 bits
    payload = struct.pack("!I", 2) + block + struct.pack("!I", zlib.crc32(block))
    _err(tmp_path, raw_file(h, payload), "index >= the codebook size 3")


def test_nonzero_padding_with_valid_crc(tmp_path):
    h = make_cf([4], 1, chunk=1).header()
    block = bytes([0b10000001])
    payload = struct.pack("!I", 1) + block + struct.pack("!I", zlib.crc32(block))
    _err(tmp_path, raw_file(h, payload), "padding")


def test_trailing_garbage(tmp_path, good):
    _err(tmp_path, good[1] + b"\x00", "trailing garbage")


def test_trailing_garbage_after_coded_layers(tmp_path):
    path = write_codes(tmp_path / "c.codes", skewed_cf(layers=2), entropy=True)
    _err(tmp_path, path.read_bytes() + b"\x00" * 8, "trailing garbage")


def test_model_hash_mismatch(tmp_path, good):
    assert read_codes(good[0], expected_model_hash=SHA).model_sha256 == SHA
    err = _err(tmp_path, good[1], "codes were made by model 'sqvae-vctk'", expected_model_hash="f" * 64)
    assert "this is model sha256 ffffffffffff" in str(err)


def test_every_truncation_raises(tmp_path):
    for entropy in (False, True):
        data = write_codes(
            tmp_path / "t.codes", skewed_cf(layers=2, n=20, chunk=8), entropy=entropy
        ).read_bytes()
        for end in range(len(data)):
            with pytest.raises(CodesFormatError, match="cut.codes"):
                bs.from_bytes(data[:end], "cut.codes")
    path = tmp_path / "cut.codes"  # the same through a real file, at a few points
    for end in (0, 3, 8, 12, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:end])
        with pytest.raises(CodesFormatError, match="cut.codes"):
            read_codes(path)


@pytest.mark.parametrize("entropy", [False, True])
def test_every_single_bit_flip_is_detected(tmp_path, entropy):
    """Flipping any one bit of a small file gives an error or (never, in practice) the same decode."""
    cf = skewed_cf(layers=2, n=12, k=16, chunk=5)
    data = write_codes(tmp_path / "f.codes", cf, entropy=entropy).read_bytes()
    assert (codes_header(data)["entropy"] is not None) == entropy
    assert_same(bs.from_bytes(data), cf)
    silent = 0
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        try:
            got = bs.from_bytes(bytes(flipped), "flip.codes")
        except CodesFormatError as err:
            assert "flip.codes" in str(err)
            continue
        assert_same(got, cf)  # a flip that is not detected must not change the decode
        silent += 1
    assert silent == 0


# ------------------------------------------------------------------------------------------- writing


def test_invalid_codes_raise_before_any_file_exists(tmp_path):
    cf = make_cf([4, 4], 10)
    cf.codes[1, 3] = 4
    target = tmp_path / "out.codes"
    with pytest.raises(CodesFormatError, match="out.codes: layer 1 has indices outside"):
        write_codes(target, cf)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change",
    [
        {"codes": np.zeros((3, 4), int)},
        {"codes": np.zeros(4, int)},
        {"codes": np.zeros((2, 4), float) + 0.5},
        {"codebook_sizes": [1, 4]},
        {"model_sha256": "nothex"},
        {"chunk_latents": 0},
        {"meta": {"x": float("nan")}},
        {"meta": {"x": object()}},
        {"meta": {"x": "y" * 70000}},
    ],
)
def test_invalid_codes_file_is_not_written(tmp_path, change):
    cf = make_cf([4, 4], 4)
    for key, value in change.items():
        setattr(cf, key, value)
    existing = tmp_path / "out.codes"
    existing.write_bytes(b"keep me")
    with pytest.raises(CodesFormatError, match="out.codes: "):
        write_codes(existing, cf)
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.codes"]


def test_failed_write_leaves_no_temporary(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(bs.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_codes(tmp_path / "out.codes", make_cf([4], 4))
    assert list(tmp_path.iterdir()) == []


def test_write_overwrites_atomically_and_sets_permissions(tmp_path):
    target = tmp_path / "out.codes"
    target.write_bytes(b"old")
    write_codes(target, make_cf([4], 4))
    assert read_codes(target).num_latents == 4
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_coded_block_with_unused_data_and_valid_crc(tmp_path):
    data = bs.to_bytes(skewed_cf(layers=1, n=50, chunk=64), entropy=True)
    ((_, start, end),) = _block_spans(data)
    m = struct.unpack("!I", data[start : start + 4])[0]
    body = struct.pack("!I", m + 4) + data[start + 4 : start + 4 + m] + b"\x12\x34\x56\x78"
    bad = data[:start] + body + struct.pack("!I", zlib.crc32(body)) + data[end:]
    _err(tmp_path, bad, "chunk 0 layer 0: cannot decode \\(coded block has unused or non-canonical data\\)")
