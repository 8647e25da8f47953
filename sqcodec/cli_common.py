"""What every ``sqcodec`` command does with bad input: one ``sqcodec: error: ...`` line, exit code 1."""

from __future__ import annotations

import typer


def error_line(message: object) -> None:
    """Print ``message`` as exactly one line on stderr (newlines and runs of spaces collapsed)."""
    typer.echo(f"sqcodec: error: {' '.join(str(message).split())}", err=True)


def fail(message: object) -> None:
    """:func:`error_line`, then exit with code 1."""
    error_line(message)
    raise typer.Exit(code=1)
