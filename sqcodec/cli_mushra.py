"""``sqcodec mushra build|serve|analyze``: MUSHRA listening tests (ITU-R BS.1534-3).

The lead's ``sqcodec/cli.py`` calls :func:`register` to add the ``mushra`` command group to its app.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sqcodec.cli_common import fail

__all__ = ["analyze", "build", "mushra_app", "register", "serve"]

mushra_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="MUSHRA listening tests (ITU-R BS.1534-3): build the stimuli and page, serve it, analyze ratings.",
)


@mushra_app.command("build")
def build(
    ref_dir: Path = typer.Argument(
        ..., help="Folder of reference audio: one trial per file (searched recursively)."
    ),
    systems: list[str] = typer.Argument(
        ...,
        help="System folders, as PATH (named after the folder) or NAME=PATH; files matched to REF_DIR by "
        "relative path, extension ignored.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Test folder to create (TEST_DIR)."),
    name: str | None = typer.Option(None, "--name", help="Test id (default: the TEST_DIR folder name)."),
    anchors: str = typer.Option(
        "lp35,lp7",
        "--anchors",
        help="Comma list of lp35 (3.5 kHz low-pass), lp7 (7 kHz), noise (white noise "
        "at --noise-snr), or none.",
    ),
    reference: str = typer.Option(
        "original",
        "--reference",
        help="original: REF_DIR's files; resynth: their vocoder resynthesis from "
        "--resynth-dir (HQ-VAE's choice when the systems are mel codecs).",
    ),
    resynth_dir: Path | None = typer.Option(
        None, "--resynth-dir", help="Resynthesised references (matched by name)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of trial choice, trial and condition order, noise anchors."
    ),
    max_trials: int | None = typer.Option(
        None, "--max-trials", help="Use at most N reference files (seeded pick)."
    ),
    sample_rate: int | None = typer.Option(
        None, "--sample-rate", help="Rate of every stimulus (default: the highest reference rate)."
    ),
    max_seconds: float | None = typer.Option(
        None, "--max-seconds", help="Crop every trial to at most this long."
    ),
    loudness: str = typer.Option(
        "bs1770", "--loudness", help="Loudness matching to the reference: bs1770 (K-weighted, gated) or rms."
    ),
    target_loudness: float | None = typer.Option(
        None, "--target-loudness", help="Bring every trial to this level (LUFS, or dBFS with rms) instead."
    ),
    noise_snr: float = typer.Option(0.0, "--noise-snr", help="SNR (dB) of the white-noise anchor."),
    force: bool = typer.Option(False, "--force", help="Replace TEST_DIR if it exists."),
) -> None:
    """Make the stimuli, a webMUSHRA config and a built-in page for a MUSHRA test."""
    from sqcodec.audio import AudioError
    from sqcodec.mushra.build import build_test, parse_anchors, parse_system
    from sqcodec.mushra.common import MushraError

    try:
        result = build_test(
            ref_dir,
            [parse_system(s) for s in systems],
            out,
            name=name,
            anchors=parse_anchors(anchors),
            reference=reference,
            resynth_dir=resynth_dir,
            seed=seed,
            max_trials=max_trials,
            sample_rate=sample_rate,
            max_seconds=max_seconds,
            loudness=loudness,
            target_loudness=target_loudness,
            noise_snr_db=noise_snr,
            force=force,
        )
    except (MushraError, AudioError) as exc:
        fail(exc)
    except OSError as exc:
        fail(f"{exc.filename or out}: {exc.strerror or exc}")
    for note in result.notes:
        typer.echo(f"sqcodec: note: {note}", err=True)
    typer.echo(
        f"{result.test_dir}: {result.trials} trials x {len(result.conditions)} conditions "
        f"({', '.join(result.conditions)}) at {result.sample_rate} Hz"
    )
    typer.echo(f"webMUSHRA config: {result.webmushra_config}")
    typer.echo(f"run it with: sqcodec mushra serve {result.test_dir}")


@mushra_app.command("serve")
def serve(
    test_dir: Path = typer.Argument(..., help="Folder made by 'sqcodec mushra build'."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to bind (others are refused)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not log every request."),
) -> None:
    """Serve the built-in MUSHRA page on 127.0.0.1 and store the ratings in TEST_DIR/results/."""
    from sqcodec.mushra.common import MushraError
    from sqcodec.mushra.server import check_host, make_server

    try:
        check_host(host)
        server = make_server(test_dir, host=host, port=port, quiet=quiet)
    except MushraError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"--port {port}: cannot listen on {host} ({exc.strerror or exc})")
    typer.echo(f"serving {server.test['test_id']} at {server.url} ; ratings go to {server.csv_path}")
    typer.echo("stop with Ctrl-C")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@mushra_app.command("analyze")
def analyze(
    csvs: list[Path] = typer.Argument(..., help="Result CSVs (from 'serve' or webMUSHRA's write.php)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (default: beside the first CSV)."
    ),
    reference_name: str = typer.Option("reference", "--reference-name", help="Name of the hidden reference."),
    mid_anchor: str = typer.Option(
        "anchor70", "--mid-anchor", help="Mid anchor for the second screening rule ('none': skip it)."
    ),
    no_screening: bool = typer.Option(False, "--no-screening", help="Keep every assessor."),
    assessor_column: str | None = typer.Option(
        None, "--assessor-column", help="Column naming the assessor (default: session_uuid)."
    ),
) -> None:
    """BS.1534-3 post-screening, per-condition median/mean/95% CI, violin plot (JSON, markdown, PNG)."""
    from sqcodec.mushra import analyze as A
    from sqcodec.mushra.common import MushraError

    try:
        report = A.analyze(
            csvs,
            reference=reference_name,
            mid_anchor=None if mid_anchor.lower() == "none" else mid_anchor,
            screening=not no_screening,
            assessor_column=assessor_column,
        )
        paths = A.write_outputs(report, out if out is not None else csvs[0].parent, assessor_column)
    except MushraError as exc:
        fail(exc)
    except OSError as exc:
        fail(f"{exc.filename or out}: cannot write ({exc.strerror or exc})")
    for note in report["notes"]:
        typer.echo(f"sqcodec: note: {note}", err=True)
    typer.echo(A.to_markdown(report), nl=False)
    for p in paths:
        typer.echo(f"wrote {p}")


def register(app: typer.Typer) -> None:
    """Add the ``mushra`` command group (build, serve, analyze) to ``app``."""
    app.add_typer(mushra_app, name="mushra")
