"""Writing into a place that cannot take the output: the commands under test and a child-process runner.

Imported by ``test_output_errors.py`` (which runs the commands in-process for the cases that need no
privileges) and run as a script (``python tests/output_failures.py SPEC.json``) inside a confined child
process for the cases that need a real full disk, a read-only file system or a folder without write
permission (see that test module for how the child is confined). Each command is run in-process through
the real CLI entry point (``sqcodec ...`` via Typer's runner, ``python -m sqcodec.recipe_tools`` via its
``main``) and reported as ``{"code": exit code, "stderr": text, "left": [paths left in the folder]}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import run_cli  # noqa: E402

#: command -> (what it writes inside the target folder, how to run it: (inputs, target) -> (code, stderr))
Op = Callable[[dict, Path], tuple[int, str]]


def _cli(*args) -> tuple[int, str]:
    code, _, err = run_cli(*args)
    return code, err


def _tools(*args) -> tuple[int, str]:
    from sqcodec import recipe_tools

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = recipe_tools.main([str(a) for a in args])
    return code, err.getvalue()


OPS: dict[str, Op] = {
    "sqcodec encode": lambda i, d: _cli("encode", i["audio"], d / "x.codes", "--model", i["model"]),
    "sqcodec decode": lambda i, d: _cli(
        "decode", i["codes"], d / "x.wav", "--model", i["model"], "--vocoder", "griffinlim"
    ),
    "sqcodec train --out": lambda i, d: _cli("train", "--config", i["config"], "--out", d / "exp"),
    "sqcodec mushra build --out": lambda i, d: _cli(
        "mushra", "build", i["mushra_ref"], i["mushra_sys"], "--out", d / "listening", "--max-seconds", 1
    ),
    "recipe_tools extract-feats": lambda i, d: _tools(
        "extract-feats", "--wav_scp", i["wav_scp"], "--preset", "codec16k", "--out", d / "feats.1"
    ),
    "recipe_tools compute-stats": lambda i, d: _tools(
        "compute-stats", "--scp", i["feats_scp"], "--out", d / "stats.json"
    ),
    "recipe_tools normalize": lambda i, d: _tools(
        "normalize", "--scp", i["feats_scp"], "--stats", i["stats"], "--out", d / "norm.1"
    ),
    "recipe_tools wav-list": lambda i, d: _tools(
        "wav-list", "--wav_scp", i["wav_scp"], "--out", d / "list.txt"
    ),
}

#: what a failed run may leave in the target folder: the trainer opens its log before anything else
ALLOWED_LEFTOVERS = {"sqcodec train --out": {"exp", "exp/train.log"}}
#: the filler file of a full file system (made by the confinement, not by a command)
FILLER = ".fill"


def leftovers(folder: Path) -> list[str]:
    """Everything under ``folder`` (relative paths, sorted) except the filler."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if rel != FILLER:
            found.append(rel)
    return found


def _clear(folder: Path) -> None:
    for p in folder.iterdir():
        if p.name == FILLER:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


def run_ops(inputs: dict, target: Path) -> dict[str, dict]:
    """Run every command into ``target``; after each, record what it left and clear the folder."""
    inputs = {k: Path(v) for k, v in inputs.items()}
    results = {}
    for name, op in OPS.items():
        code, err = op(inputs, target)
        results[name] = {"code": code, "stderr": err, "left": leftovers(target)}
        with contextlib.suppress(OSError):
            _clear(target)
    return results


def _child(spec: dict) -> dict:
    """The confined child: ``spec`` = {"inputs": {...}, "cases": {case: {"dir": path, "fsize": bool}}}."""
    out = {}
    for case, c in spec["cases"].items():
        limit = None
        if c.get("fsize"):  # unprivileged stand-in for a full disk: every write() past 0 bytes fails
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            limit = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, limit[1]))
        try:
            out[case] = run_ops(spec["inputs"], Path(c["dir"]))
        finally:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    return out


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = _child(json.loads(Path(sys.argv[1]).read_text()))
    sys.stdout.write("\nRESULT " + json.dumps(result) + "\n")
