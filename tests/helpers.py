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
