"""Shared test helpers (imported as ``from helpers import ...``): tiny model configs and a CLI runner."""

from __future__ import annotations

from typer.testing import CliRunner

#: a tiny codec-type RSQ model: 3 layers of K = 16, d_b = 8 (builds in milliseconds)
TINY_CODEC = {
    "encoder": {
        "type": "codec",
        "channels": 16,
        "in_kernel": 5,
        "frame_dilations": [1],
        "latent_dilations": [1, 3],
    },
    "decoder": {
        "type": "codec",
        "channels": 16,
        "out_kernel": 5,
        "frame_dilations": [1],
        "latent_dilations": [1, 3],
    },
    "quantizer": {"type": "residual_sq", "dim": 8, "codebook_size": 16, "num_layers": 3},
}

#: the smallest codec-type RSQ model the tests train (d_b = 4, K = 8, 2 layers; a few ms per step)
MICRO_CODEC = {
    "encoder": {
        "type": "codec",
        "channels": 8,
        "in_kernel": 3,
        "frame_dilations": [1],
        "latent_dilations": [1],
    },
    "decoder": {
        "type": "codec",
        "channels": 8,
        "out_kernel": 3,
        "frame_dilations": [1],
        "latent_dilations": [1],
    },
    "quantizer": {"type": "residual_sq", "dim": 4, "codebook_size": 8, "num_layers": 2},
}


def run_cli(*args) -> tuple[int, str, str]:
    """Run the real ``sqcodec`` app in-process: ``(exit code, stdout, stderr)``."""
    from sqcodec.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash is a crash, not an exit code
    return result.exit_code, result.stdout, result.stderr


def codes_header(data: bytes) -> dict:
    """The JSON header of ``.codes`` bytes of format version 1 (plain) or 2 (deflated), read here
    independently of :mod:`sqcodec.bitstream`'s reader."""
    import json
    import struct
    import zlib

    from sqcodec.bitstream import HEADER_ZDICT

    n = struct.unpack("!I", data[5:9])[0]
    body = data[9 : 9 + n]
    if data[4] >= 2:
        z = zlib.decompressobj(-15, HEADER_ZDICT)
        body = z.decompress(body)
        assert z.eof and not z.unused_data
    return json.loads(body)


def codes_payload(data: bytes) -> bytes:
    """The bytes after the header CRC of ``.codes`` bytes."""
    import struct

    return data[13 + struct.unpack("!I", data[5:9])[0] :]


def codes_bytes(header: dict, payload: bytes = b"", version: int | None = None) -> bytes:
    """A ``.codes`` file with any header (valid CRC) and payload, bypassing the writer's checks: format
    ``version`` (default: the header's own ``version`` when it is 1 or 2, else 2)."""
    import json
    import struct
    import zlib

    from sqcodec.bitstream import HEADER_ZDICT

    if version is None:
        version = header.get("version") if header.get("version") in (1, 2) else 2
    body = json.dumps(header, sort_keys=True).encode()
    if version >= 2:
        z = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_ZDICT)
        body = z.compress(body) + z.flush()
    head = struct.pack("!4sBI", b"SQCD", version, len(body)) + body
    return head + struct.pack("!I", zlib.crc32(head)) + payload
