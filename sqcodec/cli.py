"""The ``sqcodec`` command line: thin calls into the library (encode, decode, info, score, train, ...)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from sqcodec.cli_common import fail

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="sqcodec: neural audio codec toolkit built on stochastically quantized VAEs.",
)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that describe bad input (a config, data or checkpoint), reported in one line."""
    from sqcodec.audio import AudioError
    from sqcodec.bitstream import CodesFormatError
    from sqcodec.codec import CodecError
    from sqcodec.train.checkpoint import CheckpointError
    from sqcodec.train.config import ConfigError
    from sqcodec.train.data import DataError

    return (AudioError, CheckpointError, CodecError, CodesFormatError, ConfigError, DataError)


@app.command()
def train(
    config: Path = typer.Option(..., "--config", "-c", help="YAML config holding every hyperparameter."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Experiment folder (default: from config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last complete checkpoint."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value, e.g. train.steps=100."),
) -> None:
    """Train a model from a YAML config (multi-GPU: torchrun --nproc_per_node N -m sqcodec.train ...)."""
    from sqcodec.train import train as run_training

    if not config.is_file():
        fail(f"{config}: config file not found")
    try:
        exp = run_training(config, resume=resume, overrides=list(set_), out_dir=out)
    except _user_errors() as e:
        fail(e)
    except OSError as e:  # a safety net: the trainer reports its own output errors as OutputError
        fail(f"{e.filename or out or config}: {e.strerror or e}")
    typer.echo(f"experiment folder: {exp}")


@app.command()
def plot(
    telemetry: Path = typer.Argument(..., help="train.jsonl of a training run (or its experiment folder)."),
    png: Path | None = typer.Argument(None, help="Output PNG (default: beside the JSONL)."),
) -> None:
    """Plot per-layer s_l^2, mean entropy, perplexity and losses of a training run."""
    from sqcodec.train.telemetry import plot_telemetry

    if telemetry.is_dir():
        telemetry = telemetry / "train.jsonl"
    if not telemetry.is_file():
        fail(f"{telemetry}: telemetry file not found")
    png = png or telemetry.with_suffix(".png")
    plot_telemetry(telemetry, png)
    typer.echo(f"wrote {png}")


@app.command()
def demo(
    wav: Path | None = typer.Argument(None, help="Audio file to code (default: a clip made by the demo)."),
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Output folder."),
) -> None:
    """Encode a file with the embedded default codec and decode it with 1, 2, 4 and 8 layers."""
    from sqcodec.demo import run_demo

    if wav is not None and not wav.is_file():
        fail(f"{wav}: file not found")
    try:
        run_demo(wav, out)
    except _user_errors() as e:
        fail(e)


def _register_subcommands() -> None:
    """Commands defined next to the library code they call (each module has ``register(app)``)."""
    from sqcodec import cli_abx, cli_codec, cli_eval, cli_mushra

    cli_abx.register(app)
    cli_codec.register(app)
    cli_eval.register(app)
    cli_mushra.register(app)


_register_subcommands()


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="sqcodec")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
