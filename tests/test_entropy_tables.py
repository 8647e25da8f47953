"""Entropy tables stored with the model (sqcodec.entropy_tables) and ``.codes`` files coded with them:
the builder's guarantees, safe loading, bit-exact round trips, refusals, corruption, old files, the CLI."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import soundfile as sf
from helpers import codes_bytes, codes_header, codes_payload, run_cli

from sqcodec import bitstream as bs
from sqcodec.bitstream import CodesFile, CodesFormatError, from_bytes, read_codes, read_header, write_codes
from sqcodec.entropy_tables import (
    DEFAULT_TABLES,
    EntropyTablesError,
    build_tables,
    code_histograms,
    load_tables,
    save_tables,
)

pytest.importorskip("constriction")

SHA = "cd" * 32
K = 256


def skewed(layers: int, n: int, seed: int) -> np.ndarray:
    """Zipf-distributed indices over all K entries (6.2 bits of entropy of 8): a per-file table of them
    is large, a model table pays from a few hundred latents on."""
    p = 1 / np.arange(1, K + 1)
    return np.random.default_rng(seed).choice(K, size=(layers, n), p=p / p.sum()).astype(np.int64)


def make_cf(codes: np.ndarray, chunk: int = 100) -> CodesFile:
    return CodesFile(
        codes=codes,
        codebook_sizes=[K] * codes.shape[0],
        model_id="skewed",
        model_sha256=SHA,
        preset="p",
        sample_rate=16000,
        hop=160,
        latent_rate=50.0,
        orig_sample_rate=16000,
        orig_length=codes.shape[1] * 320,
        chunk_latents=chunk,
    )


@pytest.fixture(scope="module")
def tables():
    """Tables of 4 layers built from 'training' codes of the same distribution as the test files."""
    return build_tables(code_histograms([skewed(4, 5000, seed=0)], [K] * 4), model_sha256=SHA)


@pytest.fixture(scope="module")
def other_tables():
    return build_tables(code_histograms([K - 1 - skewed(4, 5000, seed=1)], [K] * 4))


# ------------------------------------------------------------------------------------------ the builder


def test_builder_gives_every_symbol_a_count_and_the_exact_dyadic_sum():
    hist = np.zeros(K, dtype=np.int64)
    hist[7] = 10**6  # one symbol seen a million times, 255 never
    t = build_tables([hist, np.ones(K, dtype=np.int64)], precision=12)
    for counts in t.counts:
        assert counts.dtype == np.int64 and counts.min() >= 1 and int(counts.sum()) == 1 << 12
    assert t.counts[0][7] > 3000 and (np.delete(t.counts[0], 7) >= 1).all()
    assert t.counts[1].max() - t.counts[1].min() <= 1  # uniform stays uniform
    with pytest.raises(ValueError, match="too small"):
        build_tables([hist], precision=8)  # 2**8 < 2 K


def test_histograms_count_every_layer_and_refuse_bad_codes():
    h = code_histograms([np.array([[0, 1, 1], [2, 2, 2]]), np.array([[1], [0]])], [3, 3])
    assert [x.tolist() for x in h] == [[1, 3, 0], [1, 0, 3]]
    with pytest.raises(ValueError, match="outside"):
        code_histograms([np.array([[0, 3]])], [3])


def test_save_load_round_trip_and_hash(tables, tmp_path):
    path = save_tables(tables, tmp_path)
    assert path.name == "entropy_tables.json"
    got = load_tables(path)
    assert got.sha256 == tables.sha256 and got.precision == tables.precision
    assert all(np.array_equal(a, b) for a, b in zip(got.counts, tables.counts, strict=True))
    assert json.loads(path.read_text())["sha256"] == tables.sha256


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["counts"][1].__setitem__(0, d["counts"][1][0] + 1), "sum to"),
        (lambda d: d["counts"][0].__setitem__(0, 0), ">= 1"),
        (lambda d: d["counts"][2].__setitem__(3, 1.5), ">= 1"),
        (lambda d: d.__setitem__("codebook_sizes", [K] * 3), "codebook_sizes"),
        (lambda d: d.__setitem__("precision", 17), "precision"),
        (lambda d: d.__setitem__("sha256", "0" * 64), "not the hash"),
        (lambda d: d.__setitem__("format", "pickle"), "not an sqcodec entropy-tables file"),
        (lambda d: d.__setitem__("version", 2), "version"),
        (lambda d: d.__setitem__("counts", []), "non-empty"),
    ],
)
def test_bad_tables_file_gives_one_line_naming_it(tables, tmp_path, edit, match):
    path = save_tables(tables, tmp_path)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(EntropyTablesError, match=match) as err:
        load_tables(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_tables_file_that_is_not_json(tmp_path):
    for data in (b"\x80\x81", b"{not json", b"[NaN]"):
        (tmp_path / "t.json").write_bytes(data)
        with pytest.raises(EntropyTablesError, match="t.json"):
            load_tables(tmp_path / "t.json")
    with pytest.raises(EntropyTablesError, match="cannot be read"):
        load_tables(tmp_path / "missing.json")


# --------------------------------------------------------------------------------- coding with them


def test_round_trip_is_bit_exact_at_all_and_fewer_layers(tables, tmp_path):
    cf = make_cf(skewed(4, 1000, seed=5))
    path = write_codes(tmp_path / "a.codes", cf, model_tables=tables)
    e = read_header(path)["entropy"]
    assert e["tables"] == ["model"] * 4 and e["model_tables_sha256"] == tables.sha256
    for layers in (None, 1, 2, 4):
        got = read_codes(path, layers=layers, expected_model_hash=SHA, model_tables=tables)
        assert np.array_equal(got.codes, cf.codes[:layers])
        assert all(np.array_equal(t, c) for t, c in zip(got.entropy_tables, tables.counts, strict=False))
    # smaller than both packing and per-file tables, with the header and its sha256 included
    assert path.stat().st_size < len(bs.to_bytes(cf, "auto")) <= len(bs.to_bytes(cf, False))


def test_auto_picks_per_layer_the_smallest_form(tables):
    codes = skewed(3, 1000, seed=6)  # the model's distribution: its table wins
    codes[1] = np.random.default_rng(2).integers(0, K, codes.shape[1])  # uniform: stays packed
    codes[2] = np.random.default_rng(3).integers(0, 4, codes.shape[1])  # 4 symbols: its own table wins
    data = bs.to_bytes(make_cf(codes, chunk=1000), "auto", tables)
    assert codes_header(data)["entropy"]["tables"][:2] == ["model", None]
    assert isinstance(codes_header(data)["entropy"]["tables"][2], dict)
    assert np.array_equal(from_bytes(data, model_tables=tables).codes, codes)


def test_short_uniform_codes_stay_byte_identical_to_packed(tables):
    cf = make_cf(np.random.default_rng(0).integers(0, K, (4, 300)))
    assert bs.to_bytes(cf, "auto", tables) == bs.to_bytes(cf, False)


def test_decoding_without_or_with_other_tables_fails_with_one_line(tables, other_tables, tmp_path):
    path = write_codes(tmp_path / "a.codes", make_cf(skewed(2, 500, seed=7)), True, tables)
    for given, match in (
        (None, "was coded with the entropy tables of model"),
        (other_tables, "other entropy"),
    ):
        with pytest.raises(CodesFormatError, match=match) as err:
            read_codes(path, model_tables=given)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    # the header and a full CRC check need no tables
    assert read_header(path)["num_latents"] == 500
    assert bs.check_codes(path)["layers"] == 2


def test_bit_flip_in_a_model_coded_block_is_detected(tables):
    data = bs.to_bytes(make_cf(skewed(2, 60, seed=8), chunk=30), True, tables)
    start = 13 + struct.unpack("!I", data[5:9])[0]
    assert codes_header(data)["entropy"]["tables"] == ["model", "model"]
    for i in range(start, len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(CodesFormatError):
                from_bytes(bytes(bad), model_tables=tables)


@pytest.mark.parametrize(
    "entropy",
    [
        {"coder": bs.ENTROPY_CODER, "tables": ["model", None]},  # no sha256
        {"coder": bs.ENTROPY_CODER, "tables": [None, None], "model_tables_sha256": "ab" * 32},  # no layer
        {"coder": bs.ENTROPY_CODER, "tables": ["model", None], "model_tables_sha256": "AB" * 32},
        {"coder": bs.ENTROPY_CODER, "tables": ["Model", None], "model_tables_sha256": "ab" * 32},
    ],
)
def test_malformed_model_table_headers_are_refused(tables, entropy):
    data = bs.to_bytes(make_cf(skewed(2, 20, seed=9)), False)
    h = codes_header(data)
    h["entropy"] = entropy
    raw = codes_bytes(h, codes_payload(data))
    with pytest.raises(CodesFormatError, match="entropy"):
        from_bytes(raw, model_tables=tables)


#: written by sqcodec at commit e84913f (before model tables): 2 layers of K = 16, 48 latents in chunks of
#: 32, both layers coded with per-file tables (``to_bytes(cf, True)``)
OLD_PER_FILE_FILE = (
    "5351434401000001db7b226368756e6b5f6c6174656e7473223a33322c22636f6465626f6f6b5f73697a6573223a5b31"
    "362c31365d2c22656e74726f7079223a7b22636f646572223a22636f6e737472696374696f6e2d72616e67652d636174"
    "65676f726963616c2d66617374222c227461626c6573223a5b7b22636f756e7473223a2239496f6b63522f41222c2270"
    "7265636973696f6e223a357d2c7b22636f756e7473223a224d3256464847596b546d6d41222c22707265636973696f6e"
    "223a367d5d7d2c226761696e223a312e302c22686f70223a3136302c226c6174656e745f72617465223a35302e302c22"
    "6c6179657273223a322c226d657461223a7b7d2c226d6f64656c5f6964223a226f6c64222c226d6f64656c5f73686132"
    "3536223a2261626162616261626162616261626162616261626162616261626162616261626162616261626162616261"
    "626162616261626162616261626162616261626162222c226e756d5f6c6174656e7473223a34382c226f7269675f6368"
    "616e6e656c73223a312c226f7269675f6c656e677468223a31353336302c226f7269675f73616d706c655f7261746522"
    "3a31363030302c22707265736574223a2270222c2273616d706c655f72617465223a31363030302c2276657273696f6e"
    "223a317db94e5094000000200000000cb46e0443ae7c8c5509794017b5b3bfdd00000010b4e1768d24e78a31714abec4"
    "2deb0cf738fac98600000010000000084b62d4a70e30e5936dc0ad4b000000083a4916129dd41f4f24afc806"
)
OLD_CODES = [
    [8, 8, 8, 7, 7, 7, 8, 10, 7, 7, 9, 9, 8, 7, 8, 9, 6, 7, 5, 6, 5, 8, 6, 8, 8, 8, 4, 7, 8, 8, 6, 7, 7, 7]
    + [10, 7, 8, 9, 7, 8, 8, 8, 6, 8, 10, 6, 9, 8],
    [9, 13, 10, 5, 10, 9, 1, 0, 10, 6, 9, 5, 3, 2, 6, 13, 6, 6, 9, 15, 6, 9, 7, 9, 7, 10, 8, 10, 15, 2]
    + [8, 7, 5, 3, 0, 6, 13, 1, 6, 15, 15, 3, 0, 10, 0, 4, 7, 13],
]


def test_files_written_before_model_tables_still_decode(tables):
    data = bytes.fromhex(OLD_PER_FILE_FILE)
    for given in (None, tables):  # tables are ignored by a file that does not use them
        got = from_bytes(data, model_tables=given)
        assert got.codes.tolist() == OLD_CODES and all(t is not None for t in got.entropy_tables)
    assert bs.to_bytes(got, True, version=1) == data  # and the writer still writes the same bytes


# ------------------------------------------------------------------------------ the default model


@pytest.fixture(scope="module")
def default_tables():
    return load_tables(DEFAULT_TABLES)


def test_default_model_tables_validate_and_fit_the_model(default_tables):
    from sqcodec.codec import DEFAULT_MODEL_DIR, load_codec

    codec = load_codec(None, vocoder="griffinlim")
    assert codec.entropy_tables is not None and codec.entropy_tables.sha256 == default_tables.sha256
    assert default_tables.codebook_sizes == codec.codebook_sizes
    assert default_tables.model_sha256 == codec.model_sha256
    record = json.loads((DEFAULT_MODEL_DIR / "TRAINING.json").read_text())["entropy_tables"]
    assert record["sha256"] == default_tables.sha256 and record["list"] == "training_list.txt"
    for counts in default_tables.counts:
        assert counts.min() >= 1 and int(counts.sum()) == 1 << default_tables.precision


def test_default_tables_code_held_out_speech_below_the_packing(default_tables, realaudio):
    """On 2 held-out files the tables cost fewer bits than ceil(log2 K) at layer 1 (7.76 of 8 measured with
    the v3 model, 7.4 with v2: a better model spends its codes more evenly); a file coded with them decodes
    bit-exactly, and ``auto`` never writes more than plain packing."""
    from sqcodec.codec import load_codec, read_mono_blocks
    from sqcodec.data import speech_list

    codec = load_codec(None, vocoder="griffinlim")
    files = speech_list("heldout", realaudio)[:2]
    codes = np.concatenate(
        [codec.encode_blocks(read_mono_blocks(f, codec.sample_rate))[0].numpy() for f in files], axis=1
    )
    n = codes.shape[1]
    assert default_tables.bits(0, codes[0]) < 7.9 * n
    cf = make_cf(codes[:1])
    cf.model_sha256 = codec.model_sha256
    coded = bs.to_bytes(cf, True, default_tables)
    assert codes_header(coded)["entropy"]["tables"] == ["model"]
    assert np.array_equal(from_bytes(coded, model_tables=default_tables).codes, codes[:1])
    # on 294 indices the range coder's overhead can outweigh what 0.24 bit/index saves: auto then packs
    assert len(bs.to_bytes(cf, "auto", default_tables)) <= len(bs.to_bytes(cf, False))


def test_cli_encode_decode_use_the_model_folder_tables(realaudio, tmp_path, monkeypatch):
    """A model folder with tables: ``encode`` offers them to the writer, a file coded with them decodes
    with ``decode`` and ``info --model`` of that folder, and not once the folder has lost them."""
    import torch
    from helpers import TINY_CODEC

    import sqcodec.codec as codec_module
    from sqcodec.codec import Codec, load_codec, save_codec
    from sqcodec.model import build_model

    torch.manual_seed(0)
    folder = save_codec(Codec(build_model(TINY_CODEC), "codec16k", model_id="tiny"), tmp_path / "tiny")
    codec = load_codec(folder, vocoder="griffinlim")
    assert codec.entropy_tables is None
    src = realaudio / "speech/librispeech/test-other/2033/2033-164914-0000.flac"
    first = codec.encode_file(src, tmp_path / "plain.codes")
    tables = build_tables(code_histograms([first.codes], codec.codebook_sizes))
    save_tables(tables, folder)
    offered = []

    def spy(path, cf, entropy="auto", model_tables=None):
        offered.append(model_tables)
        return bs.write_codes(path, cf, entropy, model_tables)

    monkeypatch.setattr(codec_module, "write_codes", spy)
    code, out, err = run_cli("encode", src, tmp_path / "cli.codes", "--model", folder)
    assert code == 0, err
    assert [t.sha256 for t in offered] == [tables.sha256]
    codes, wav = tmp_path / "a.codes", tmp_path / "a.wav"
    bs.write_codes(codes, first, True, tables)  # every layer coded with the folder's tables
    assert read_header(codes)["entropy"]["tables"] == ["model"] * 3
    code, out, err = run_cli("info", codes, "--json", "--model", folder)
    assert code == 0, err
    assert json.loads(out)["entropy_model_tables_found"]
    code, out, err = run_cli("decode", codes, wav, "--model", folder, "--vocoder", "griffinlim")
    assert code == 0, err
    assert sf.info(wav).frames == sf.info(src).frames
    (folder / "entropy_tables.json").unlink()  # the same model without its tables cannot read the file
    code, out, err = run_cli("decode", codes, tmp_path / "b.wav", "--model", folder, "--force")
    assert code == 1 and "was coded with the entropy tables" in err and len(err.strip().splitlines()) == 1


def test_cli_round_trip_on_the_default_model(realaudio, tmp_path):
    """The default model loads its tables; ``auto`` never makes a file larger than packed or than per-file
    tables alone (on its near-uniform codes the packing wins on short files: BENCHMARKS.md §3)."""
    from sqcodec.codec import load_codec

    src = speech_list_heldout(realaudio)[0]
    codes, wav = tmp_path / "a.codes", tmp_path / "a.wav"
    code, out, err = run_cli("encode", src, codes, "--layers", "2")
    assert code == 0, err
    codec = load_codec(None, vocoder="griffinlim")
    cf = read_codes(codes, expected_model_hash=codec.model_sha256, model_tables=codec.entropy_tables)
    assert codes.stat().st_size <= len(bs.to_bytes(cf, "auto")) <= len(bs.to_bytes(cf, False))
    code, out, err = run_cli("info", codes)
    assert code == 0, err
    code, out, err = run_cli("decode", codes, wav, "--vocoder", "griffinlim")
    assert code == 0, err
    assert sf.info(wav).frames == sf.info(src).frames


def speech_list_heldout(root):
    from sqcodec.data import speech_list

    return speech_list("heldout", root)


def test_info_on_a_model_coded_file_without_its_tables(tables, tmp_path):
    path = write_codes(tmp_path / "a.codes", make_cf(skewed(2, 500, seed=10)), True, tables)
    code, out, err = run_cli("info", path)
    assert code == 0, err
    assert "model tables sha256" in out and "CRCs checked, not decoded" in out
    bad = bytearray(path.read_bytes())
    bad[-6] ^= 1
    (tmp_path / "b.codes").write_bytes(bytes(bad))
    code, out, err = run_cli("info", tmp_path / "b.codes")
    assert code == 1 and "CRC mismatch" in err and len(err.strip().splitlines()) == 1
