"""Codec commands of the ``sqcodec`` CLI: ``encode``, ``decode``, ``info``.

The lead's :mod:`sqcodec.cli` calls :func:`register` to add them to its Typer app. Every failure prints
one line ``sqcodec: error: <file>: <problem>`` on stderr and exits with code 1; outputs are written to a
temporary file and renamed, so a failed file leaves nothing behind. Existing outputs are refused
unless ``--force``. A directory input encodes (decodes) every audio (``.codes``) file in it into a
mirrored tree under OUT (``--recursive`` descends into sub-folders), with a progress bar.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import typer

from sqcodec.cli_common import error_line, fail

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
CODES_SUFFIX = ".codes"

LAYERS_HELP = "Code layers to keep (1..L; default: all). Fewer layers = lower bitrate."
MODEL_HELP = "Trained model: a training checkpoint (.pt) or a folder with model.safetensors + config.json."


class _Failed(Exception):
    """A per-file failure already formatted as one line."""


def _errors() -> tuple[type[BaseException], ...]:
    from sqcodec.audio import AudioError
    from sqcodec.bitstream import CodesFormatError
    from sqcodec.codec import CodecError
    from sqcodec.train.checkpoint import CheckpointError

    return (AudioError, CodesFormatError, CodecError, CheckpointError, OSError)


def _message(err: BaseException, *paths: Path) -> str:
    """One line naming the file: the error's own message when it starts with one of ``paths``, else
    prefixed with the first of them."""
    msg = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and getattr(err, "filename", None):
        return f"{err.filename}: {err.strerror or msg}"
    if paths and not any(msg.startswith(str(p)) for p in paths):
        return f"{paths[0]}: {msg}"
    return msg


def _load(model: Path | None, device: str, vocoder: str = "auto") -> Any:
    from sqcodec.codec import load_codec

    try:
        return load_codec(model, device=device, vocoder=vocoder)
    except _errors() as err:
        fail(_message(err))


def _pairs(src: Path, dst: Path, suffixes: tuple[str, ...], out_suffix: str, recursive: bool):
    """(input, output) pairs: one file, or the matching files of a folder mirrored under ``dst``."""
    try:
        return _find_pairs(src, dst, suffixes, out_suffix, recursive)
    except OSError as err:  # e.g. an input or output folder that cannot be listed
        fail(f"{err.filename or dst}: {err.strerror or err}")


def _find_pairs(src: Path, dst: Path, suffixes: tuple[str, ...], out_suffix: str, recursive: bool):
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            fail(f"{dst}: output must be a folder when the input {src} is a folder")
        walk = src.rglob("*") if recursive else src.iterdir()
        files = sorted(p for p in walk if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            fail(f"{src}: no input files ({', '.join(suffixes)}){'' if recursive else ' (try --recursive)'}")
        return [(p, (dst / p.relative_to(src)).with_suffix(out_suffix)) for p in files], True
    if not src.exists():
        fail(f"{src}: no such file or folder")
    if dst.is_dir():
        dst = dst / (src.stem + out_suffix)
    return [(src, dst)], False


def _run(
    pairs: list[tuple[Path, Path]],
    work: Callable[[Path, Path], str],
    force: bool,
    jobs: int,
    progress: bool,
    verb: str,
) -> int:
    """Run ``work`` on every pair (refusing existing outputs without ``force``); returns failures."""
    errors = _errors()

    def one(pair: tuple[Path, Path]) -> str | None:
        src, dst = pair
        try:
            if dst.exists() and not force:
                raise _Failed(f"{dst}: output exists (use --force to overwrite)")
            if src.resolve() == dst.resolve():
                raise _Failed(f"{dst}: output would overwrite the input")
            dst.parent.mkdir(parents=True, exist_ok=True)
            typer.echo(work(src, dst))
            return None
        except _Failed as err:
            return str(err)
        except errors as err:
            return _message(err, src, dst)
        except (ValueError, RuntimeError) as err:  # anything else the model or libraries raise
            return _message(err, src, dst)

    failures = 0
    if jobs < 1:
        fail(f"--jobs must be >= 1, got {jobs}")

    def report(result: str | None) -> None:
        nonlocal failures
        if result is not None:
            failures += 1
            error_line(result)

    if not progress:
        for pair in pairs:
            report(one(pair))
        return failures
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(f"{verb}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar, ThreadPoolExecutor(max_workers=jobs) as pool:
        task = bar.add_task(verb, total=len(pairs))
        for result in pool.map(one, pairs):
            report(result)
            bar.advance(task)
    return failures


def _finish(failures: int, total: int) -> None:
    if failures:
        if total > 1:
            error_line(f"{failures} of {total} files failed")
        raise typer.Exit(code=1)


def _kbps(bps: float) -> str:
    return f"{bps / 1000:.3f} kbps"


# ------------------------------------------------------------------------------------------ commands


def encode(
    input: Path = typer.Argument(..., help="Audio file, or a folder of audio files."),
    output: Path = typer.Argument(..., help="Output .codes file, or a folder (mirrors the input tree)."),
    layers: int | None = typer.Option(None, "--layers", "-l", help=LAYERS_HELP),
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Files coded in parallel (threads)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
    chunk_seconds: float = typer.Option(
        30.0, "--chunk-seconds", help="Inference chunk (codes do not depend on it)."
    ),
) -> None:
    """Encode audio (any rate, any channel count) into .codes files; prints the bitrate."""
    from sqcodec.bitstream import file_bits_per_second

    pairs, is_dir = _pairs(input, output, AUDIO_SUFFIXES, CODES_SUFFIX, recursive)
    codec = _load(model, device, "griffinlim")
    try:
        keep = codec._layers(layers)
    except ValueError as err:
        fail(f"--layers: {err}")
    try:
        codec._chunk_latents(chunk_seconds)
    except ValueError as err:
        fail(f"--chunk-seconds: {err}")
    typer.echo(
        f"model {codec.model_id} ({codec.preset.name}): {keep} of {codec.num_layers} layers, "
        f"{_kbps(codec.bits_per_second(keep))} nominal"
    )

    def work(src: Path, dst: Path) -> str:
        codec.encode_file(src, dst, layers=keep, chunk_seconds=chunk_seconds)
        return f"{src} -> {dst} ({_kbps(file_bits_per_second(dst))} actual)"

    _finish(_run(pairs, work, force, jobs, is_dir, "encoding"), len(pairs))


def decode(
    input: Path = typer.Argument(..., help=".codes file, or a folder of them."),
    output: Path = typer.Argument(
        ..., help="Output audio file (.wav, .flac, ...) or folder (mirrored, .wav)."
    ),
    layers: int | None = typer.Option(None, "--layers", "-l", help="Decode only the first N stored layers."),
    model: Path | None = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    vocoder: str = typer.Option(
        "auto",
        "--vocoder",
        help="auto (the model's default: its HiFi-GAN, else Griffin-Lim), hifigan, griffinlim, "
        "or a vocoder folder.",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Files decoded in parallel (threads)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
) -> None:
    """Decode .codes files to audio at the original rate, channel count and length."""
    from sqcodec.bitstream import read_header

    if vocoder not in ("auto", "hifigan", "griffinlim") and not Path(vocoder).is_dir():
        fail(f"--vocoder: {vocoder}: not auto, hifigan, griffinlim or a vocoder folder")
    pairs, is_dir = _pairs(input, output, (CODES_SUFFIX,), ".wav", recursive)
    codec = _load(model, device, vocoder)
    voc = "Griffin-Lim" if codec.vocoder is None else "HiFi-GAN"

    if layers is not None:
        try:
            codec._layers(layers)
        except ValueError as err:
            fail(f"--layers: {err}")

    def work(src: Path, dst: Path) -> str:
        h = read_header(src)
        n = h["layers"] if layers is None else layers
        if n > h["layers"]:
            raise _Failed(f"{src}: holds {h['layers']} layers; cannot decode {n}")
        codec.decode_file(src, dst, layers=layers)
        bps = h["latent_rate"] * sum((k - 1).bit_length() for k in h["codebook_sizes"][:n])
        return f"{src} -> {dst} ({n} layers, {_kbps(bps)}, {voc})"

    _finish(_run(pairs, work, force, jobs, is_dir, "decoding"), len(pairs))


def info(
    file: Path = typer.Argument(..., help="A .codes file."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Model folder whose entropy tables decode the file (default: embedded)."
    ),
) -> None:
    """Describe a .codes file (model, preset, duration, layers, bitrates); checks every CRC."""
    data = codes_info(file, model)
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    rows = [
        ("file", data["file"]),
        ("model", f"{data['model_id']} (sha256 {data['model_sha256'][:16]}...)"),
        ("preset", f"{data['preset']} ({data['sample_rate']} Hz, hop {data['hop']})"),
        (
            "original",
            f"{data['orig_sample_rate']} Hz, {data['orig_channels']} ch, {data['orig_length']} samples "
            f"({data['orig_duration']:.3f} s)",
        ),
        (
            "duration",
            f"{data['duration']:.3f} s ({data['num_latents']} latents at {data['latent_rate']:g}/s)",
        ),
        ("layers", f"{data['layers']}"),
        ("codebook sizes", " ".join(map(str, data["codebook_sizes"]))),
        ("nominal bitrate", _kbps(data["nominal_bps"])),
        ("actual bitrate", _kbps(data["actual_bps"]) if data["actual_bps"] is not None else "n/a"),
        ("file size", f"{data['file_bytes']} bytes"),
        ("entropy coded", _entropy_row(data)),
        ("per layer", ", ".join(f"{i + 1}: {_kbps(b)}" for i, b in enumerate(data["nominal_bps_by_layers"]))),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")


def _entropy_row(data: dict[str, Any]) -> str:
    if not data["entropy_coded"]:
        return "no"
    forms = " ".join(data["entropy_layers"])
    sha = data["entropy_model_tables_sha256"]
    if sha is None:
        return f"yes (per layer: {forms})"
    checked = "decoded" if data["entropy_model_tables_found"] else "not found: CRCs checked, not decoded"
    return f"yes (per layer: {forms}; model tables sha256 {sha[:16]}..., {checked})"


def _info_tables(h: dict[str, Any], model: Path | None) -> Any:
    """The entropy tables of ``model`` (a folder; default: the embedded model) when the header names them."""
    from sqcodec.entropy_tables import DEFAULT_TABLES, TABLES_NAME, load_tables

    sha = (h["entropy"] or {}).get("model_tables_sha256")
    path = DEFAULT_TABLES if model is None else Path(model) / TABLES_NAME
    if sha is None or not path.is_file():
        return None
    tables = load_tables(path)
    return tables if tables.sha256 == sha or model is not None else None


def codes_info(file: Path, model: Path | None = None) -> dict[str, Any]:
    """The facts ``sqcodec info`` prints (reads every block and checks every CRC, so a corrupt file fails;
    layers coded with a model's entropy tables are decoded when those tables are at hand)."""
    import numpy as np

    from sqcodec.bitstream import CodesFile, check_codes, read_header
    from sqcodec.entropy_tables import EntropyTablesError

    try:
        h = read_header(file)
        tables = _info_tables(h, model)
        check_codes(file, model_tables=tables)
    except (*_errors(), EntropyTablesError) as err:
        fail(_message(err, file))
    fields = {k: h[k] for k in ("model_id", "model_sha256", "preset", "sample_rate", "hop", "latent_rate")}
    fields.update({k: h[k] for k in ("orig_sample_rate", "orig_channels", "orig_length", "gain")})
    layers = np.broadcast_to(np.int8(0), (h["layers"], h["num_latents"]))  # only its shape is used
    cf = CodesFile(layers, h["codebook_sizes"], chunk_latents=h["chunk_latents"], meta=h["meta"], **fields)
    size = os.path.getsize(file)
    duration = cf.duration
    entries = (h["entropy"] or {}).get("tables") or [None] * cf.layers
    return {
        "file": str(file),
        "format_version": h["version"],
        **fields,
        "latent_rate": cf.latent_rate,
        "gain": cf.gain,
        "num_latents": cf.num_latents,
        "duration": duration,
        "orig_duration": cf.orig_length / cf.orig_sample_rate,
        "layers": cf.layers,
        "codebook_sizes": list(cf.codebook_sizes),
        "chunk_latents": cf.chunk_latents,
        "entropy_coded": h["entropy"] is not None,
        "entropy_layers": ["packed" if t is None else "model" if t == "model" else "file" for t in entries],
        "entropy_model_tables_sha256": (h["entropy"] or {}).get("model_tables_sha256"),
        "entropy_model_tables_found": tables is not None,
        "nominal_bps": cf.bits_per_second(),
        "nominal_bps_by_layers": [cf.bits_per_second(n) for n in range(1, cf.layers + 1)],
        "actual_bps": size * 8 / duration if duration > 0 else None,
        "file_bytes": size,
        "meta": cf.meta,
    }


def register(app: typer.Typer) -> None:
    """Add ``encode``, ``decode`` and ``info`` to ``app``."""
    app.command("encode")(encode)
    app.command("decode")(decode)
    app.command("info")(info)
