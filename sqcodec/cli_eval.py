"""``sqcodec score``: objective metrics of decoded audio against references (files or folders).

The lead's ``sqcodec/cli.py`` calls :func:`register` to add the command to its typer app.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sqcodec.cli_common import fail

__all__ = ["register", "score"]


def _codes_paths(codes: Path) -> list[Path]:
    if codes.is_dir():
        paths = sorted(p for p in codes.rglob("*.codes") if p.is_file())
        if not paths:
            fail(f"{codes}: no .codes files in this folder")
        return paths
    if not codes.is_file():
        fail(f"{codes}: no such file or folder")
    return [codes]


def score(
    ref: Path = typer.Argument(..., help="Reference audio file, or a folder of them."),
    deg: Path = typer.Argument(
        ..., help="Decoded (degraded) audio file, or a folder matched to REF by name."
    ),
    preset: str = typer.Option("codec16k", "--preset", help="Mel preset of the mel metrics."),
    json_out: Path | None = typer.Option(None, "--json", help="Write per-file rows and means as JSON."),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Write the markdown table here."),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Comma-separated: mel_mse_db2,log_mel_rmse,mel_distance,mcd,pesq_wb,pesq_nb,"
        "stoi,estoi (pesq = both modes; log_mel_rmse_norm needs --stats). Default: all.",
    ),
    stats: Path | None = typer.Option(
        None, "--stats", help="Train feature stats (.json/.npz) for log_mel_rmse_norm."
    ),
    trim_edges: bool = typer.Option(False, "--trim-edges", help="Mel MSE on mel[:, 1:-1] (sony/sqvae)."),
    mcd_dtw: bool = typer.Option(False, "--mcd-dtw", help="Align MCD frames by DTW."),
    codes: Path | None = typer.Option(
        None, "--codes", help="A .codes file or folder: add per-layer perplexity and bits per second."
    ),
) -> None:
    """Score decoded audio against references: mel MSE (dB²), log-mel RMSE, mel distance, MCD, PESQ,
    (E)STOI. Prints a markdown table; --json/--markdown save the report."""
    from sqcodec.audio import PRESETS, AudioError, load_stats
    from sqcodec.bitstream import CodesFormatError
    from sqcodec.eval import score as S

    if preset not in PRESETS:
        fail(f"{preset}: unknown mel preset (known: {', '.join(PRESETS)})")
    try:
        feature_stats = load_stats(stats) if stats is not None else None
        names = S.parse_metrics(metrics, have_stats=feature_stats is not None)
    except ValueError as exc:
        fail(str(exc))
    for p in (ref, deg):
        if not p.exists():
            fail(f"{p}: no such file or folder")
    if ref.is_dir() != deg.is_dir():
        fail(f"{deg}: REF and DEG must both be files or both be folders")
    kwargs = {"stats": feature_stats, "trim_edges": trim_edges, "mcd_dtw": mcd_dtw}
    try:
        if ref.is_dir():
            result = S.score_dirs(ref, deg, preset, names, **kwargs)
        else:
            result = S.report([S.score(ref, deg, preset, names, **kwargs)], names, preset)
        if codes is not None:
            result["codes"] = S.codes_report(_codes_paths(codes))
    except (AudioError, CodesFormatError) as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(f"{deg}: {exc}")
    for p in result["unmatched_ref"]:
        typer.echo(f"sqcodec: warning: {p}: no decoded file of the same name", err=True)
    for p in result["unmatched_deg"]:
        typer.echo(f"sqcodec: warning: {p}: no reference file of the same name", err=True)
    for r in result["rows"]:
        if r.get("note"):
            typer.echo(f"sqcodec: note: {r['deg']}: {r['note']}", err=True)
    typer.echo(S.to_markdown(result), nl=False)
    try:
        if json_out is not None:
            S.write_json(result, json_out)
        if markdown_out is not None:
            S.write_markdown(result, markdown_out)
    except AudioError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or json_out}: cannot write ({exc.strerror or exc})")


def register(app: typer.Typer) -> None:
    """Add the ``score`` command to ``app``."""
    app.command("score")(score)
