"""``sqcodec abx``: minimal-pair ABX error rates (ZeroSpeech 2019 / Libri-Light item files) of features
read from a folder or computed from audio by an sqcodec model (docs/abx.md).

The lead's ``sqcodec/cli.py`` calls :func:`register` to add the command to its typer app.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from sqcodec.cli_common import fail

__all__ = ["abx", "register"]


def _progress_bar(enabled: bool, label: str):
    """A ``(done, total)`` callback drawing a transient rich bar on stderr, or ``None``."""
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=Console(stderr=True),
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def abx(
    item_file: Path = typer.Argument(
        ..., help="Item file: '#file onset offset #phone prev-phone next-phone speaker' + one line per item."
    ),
    features: Path | None = typer.Option(
        None,
        "--features",
        help="Folder of <file>.npy (frames x dims) or <file>.txt (ZeroSpeech 2019) features.",
    ),
    audio: Path | None = typer.Option(
        None, "--audio", help="Folder of <file>.wav/.flac/...: compute features with --model instead."
    ),
    ext: str | None = typer.Option(
        None, "--ext", help="Feature file extension, .npy or .txt (default: auto)."
    ),
    frame_shift: float | None = typer.Option(
        None,
        "--frame-shift",
        help="Seconds per feature frame of --features (default 0.01; Libri-Light's feature_size).",
    ),
    frame_offset: float = typer.Option(
        0.0,
        "--frame-offset",
        help="Start time (s) of frame 0 of --features; frame i is centred at offset + (i+0.5)*shift.",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="With --audio: a checkpoint (.pt), an exported codec folder, or 'default' (embedded).",
    ),
    representation: str | None = typer.Option(
        None,
        "--representation",
        help="With --audio: continuous (encoder output, default), quantized, codes, or mel (model input).",
    ),
    layers: int | None = typer.Option(
        None, "--layers", help="Code layers kept for quantized/codes (RSQ; default all)."
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Mel preset for --representation mel without --model."
    ),
    stats: Path | None = typer.Option(
        None, "--stats", help="Training feature statistics (standardised presets)."
    ),
    device: str = typer.Option("cpu", "--device", help="Torch device for --model."),
    distance: str | None = typer.Option(
        None,
        "--distance",
        help="cosine (angular), kl (symmetrised, posteriorgrams) or codes (default: codes for "
        "--representation codes, else cosine).",
    ),
    mode: str = typer.Option("all", "--mode", help="all, within or across (speaker)."),
    averaging: str = typer.Option(
        "zerospeech2019", "--averaging", help="Across-speaker averaging order: zerospeech2019 or libri-light."
    ),
    selection: str = typer.Option(
        "libri-light",
        "--selection",
        help="Frames of an item: libri-light (its exact slice) or centre (centre from onset to offset).",
    ),
    max_size_group: int | None = typer.Option(
        None, "--max-size-group", help="Sample at most N items per (context, speaker, phone) (default: all)."
    ),
    max_x_across: int | None = typer.Option(
        None,
        "--max-x-across",
        help="Sample at most N X speakers per (context, speaker, phone) (default: all).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling above."),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the full report (per phone pair) as JSON."
    ),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Write the markdown report here."),
    save_features: Path | None = typer.Option(
        None, "--save-features", help="With --audio: also write the computed features as <file>.npy here."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bars (default: on a tty)."
    ),
) -> None:
    """ABX error rates (%, lower is better) within and across speakers, with a per-phone-pair breakdown.
    Frame distance + DTW averaged along the path, ZeroSpeech 2019 / Libri-Light conventions (docs/abx.md)."""
    from sqcodec.audio import AudioError
    from sqcodec.eval import abx as A
    from sqcodec.eval import abx_features as F

    if (features is None) == (audio is None):
        fail("give exactly one of --features DIR or --audio DIR")
    if mode not in ("all", *A.MODES):
        fail(f"--mode must be all, within or across, got {mode!r}")
    if averaging not in A.AVERAGING:
        fail(f"--averaging must be one of {', '.join(A.AVERAGING)}, got {averaging!r}")
    if selection not in A.SELECTIONS:
        fail(f"--selection must be one of {', '.join(A.SELECTIONS)}, got {selection!r}")
    if distance is not None and distance not in A.DISTANCES:
        fail(f"--distance must be one of {', '.join(A.DISTANCES)}, got {distance!r}")
    if representation is not None and representation not in F.REPRESENTATIONS:
        fail(f"--representation must be one of {', '.join(F.REPRESENTATIONS)}, got {representation!r}")
    for name, v in (("--max-size-group", max_size_group), ("--max-x-across", max_x_across)):
        if v is not None and v < 1:
            fail(f"{name} must be >= 1, got {v}")
    if features is not None:
        given = [
            n
            for n, v in (
                ("--model", model),
                ("--representation", representation),
                ("--layers", layers),
                ("--preset", preset),
                ("--stats", stats),
                ("--save-features", save_features),
            )
            if v is not None
        ]
        if given:
            fail(f"{', '.join(given)} only apply with --audio (features are read from {features})")
    elif frame_shift is not None or frame_offset != 0.0:
        fail("--frame-shift/--frame-offset only apply to --features (the model sets the time axis)")
    if frame_shift is not None and not frame_shift > 0:
        fail(f"--frame-shift must be a positive number of seconds, got {frame_shift}")
    show = sys.stderr.isatty() if progress is None else progress
    modes = A.MODES if mode == "all" else (mode,)
    try:
        items = A.read_item_file(item_file)
        if features is not None:
            if ext is not None and ext.lstrip(".").lower() not in ("npy", "txt"):
                fail(f"--ext must be .npy or .txt, got {ext!r}")
            feats, paths = F.load_feature_dir(features, items, ext, item_file)
            shift, t0 = (0.01 if frame_shift is None else frame_shift), frame_offset
            source = f"{features} ({len(feats)} files)"
            dist = distance or "cosine"
        else:
            rep = representation or "continuous"
            extractor = F.ModelFeatures(model, rep, layers, device, preset, stats)
            bar, update = _progress_bar(show, "features")
            if bar is not None:
                with bar:
                    feats, paths = F.compute_features(audio, items, extractor, item_file, update)
            else:
                feats, paths = F.compute_features(audio, items, extractor, item_file)
            shift, t0 = extractor.shift, extractor.t0
            source = f"{audio}: {extractor.description}"
            dist = distance or ("codes" if rep == "codes" else "cosine")
        F.check_for_distance(feats, paths, dist)
        bar, update = _progress_bar(show, "ABX contexts")
        kwargs = dict(
            shift=shift,
            t0=t0,
            distance=dist,
            modes=modes,
            averaging=averaging,
            selection=selection,
            max_size_group=max_size_group,
            max_x_across=max_x_across,
            seed=seed,
            progress=update,
            items=items,
        )
        if bar is not None:
            with bar:
                result = A.abx(item_file, feats, **kwargs)
        else:
            result = A.abx(item_file, feats, **kwargs)
    except (A.ABXError, AudioError) as exc:
        fail(str(exc))
    result["source"] = source
    if all(result[m] is None for m in modes):
        fail(
            f"{item_file}: no ABX triplet can be formed for mode {mode} (see docs/abx.md for what each needs)"
        )
    if result["items_dropped"]:
        first = ", ".join(map(str, result["dropped_lines"][:5]))
        typer.echo(
            f"sqcodec: note: {item_file}: {result['items_dropped']} item(s) have no frame at shift "
            f"{shift:g} s and were left out (first lines: {first})",
            err=True,
        )
    typer.echo(A.to_markdown(result, max_pairs=10), nl=False)
    try:
        if save_features is not None:
            F.save_features(feats, save_features)
        if json_out is not None:
            A.write_json(result, json_out)
        if markdown_out is not None:
            A.write_markdown(result, markdown_out)
    except AudioError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or json_out or markdown_out}: cannot write ({exc.strerror or exc})")


def register(app: typer.Typer) -> None:
    """Add the ``abx`` command to ``app``."""
    app.command("abx")(abx)
