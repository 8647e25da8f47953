"""Training checkpoints: atomic writes, weights-only loading, RNG state capture, latest-checkpoint lookup.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python types (dict, list, str,
int, float, bool, None), so it loads with ``torch.load(..., weights_only=True)``: nothing is ever
unpickled. Keys: ``format``, ``version``, ``step``, ``model``, ``optimizer``, ``scheduler``, ``scaler``,
``best_val``, ``best_step``, ``rng`` (per rank: python, numpy, torch CPU, CUDA), ``data`` (what the data
order depends on), ``config`` (the resolved config) and ``provenance`` (commit, versions, seed, data lists).

Layout in an experiment directory: periodic checkpoints ``checkpoints/step_XXXXXXXX.pt`` (the last
``keep_last`` kept), ``best.pt`` (lowest validation loss). Each file is written to a temporary name in
the same directory, fsynced and renamed over the target (``os.replace``), then the directory is fsynced,
so a crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fsutil import atomic_write as _atomic_write

FORMAT = "sqcodec-train-checkpoint"
VERSION = 1
CKPT_DIR = "checkpoints"
BEST = "best.pt"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the run."""


class OutputError(CheckpointError):
    """A file of the experiment folder that cannot be written (no permission, disk full, read-only file
    system, a file where a folder should be): one line naming the file. A :class:`CheckpointError`, so
    every command that reports checkpoint problems in one line reports this one too."""


# ------------------------------------------------------------------------------------------- atomic IO
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write_fn) -> Path:
    """Call ``write_fn(fileobj)`` on a temp file beside ``path`` (parents created), fsync it, rename it
    over ``path`` and fsync the folder (:func:`sqcodec.fsutil.atomic_write`): an ``OSError`` names
    ``path`` and no temporary file is left."""
    path = _atomic_write(path, write_fn, parents=True)
    _fsync_dir(path.parent)
    return path


def output_error(err: OSError, default: str | Path) -> OutputError:
    """``err`` (raised while writing the experiment folder ``default``) as an :class:`OutputError`."""
    where = err.filename if err.filename is not None else default
    return OutputError(f"{where}: cannot write ({err.strerror or err})")


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def read_export_config(folder: Path, config_name: str, weights_name: str, fmt: str, version: int, what: str):
    """``(config dict, weights path)`` of an exported folder (JSON config + safetensors weights).

    Raises ``ValueError`` with one line naming the file when a file is missing, the JSON is unreadable,
    the format is not ``fmt`` or the version is newer than ``version``.
    """
    cfg_path, weights = Path(folder) / config_name, Path(folder) / weights_name
    for p in (cfg_path, weights):
        if not p.is_file():
            raise ValueError(f"{folder}: not a {what} folder (no {p.name})")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{cfg_path}: cannot read the {what} config ({type(err).__name__}: {err})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != fmt:
        raise ValueError(f"{cfg_path}: not an sqcodec {what} config (format {fmt!r})")
    if int(cfg.get("version", 0)) > version:
        raise ValueError(f"{cfg_path}: {what} folder version {cfg['version']} is newer than this sqcodec")
    return cfg, weights


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda f: torch.save(obj, f))


def clean_temp_files(directory: str | Path) -> None:
    """Remove temp files left by writes that were killed (``.NAME.XXXX.tmp``)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for p in directory.glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass


# ------------------------------------------------------------------------------------------ RNG states
def get_rng_state() -> dict[str, Any]:
    """RNG states of python ``random``, numpy's global generator, torch CPU and every CUDA device, as
    tensors and plain types (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# ------------------------------------------------------------------------------------------ save / load
def checkpoint_path(exp_dir: str | Path, step: int) -> Path:
    return Path(exp_dir) / CKPT_DIR / f"step_{step:08d}.pt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write a checkpoint dict (adds ``format`` / ``version``)."""
    state = {"format": FORMAT, "version": VERSION, **state}
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``. Raises :class:`CheckpointError` with the file name."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no such checkpoint") from e
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler refused an object
        raise CheckpointError(
            f"{path}: refused: the file holds Python objects beyond tensors and plain data "
            "(only weights-only checkpoints are loaded)"
        ) from e
    except Exception as e:  # truncated / corrupt / not a torch file
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(e).__name__}: {first[:200]})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an sqcodec training checkpoint")
    if int(ckpt.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this sqcodec")
    return ckpt


def list_checkpoints(exp_dir: str | Path) -> list[tuple[int, Path]]:
    """Periodic checkpoints in ``exp_dir/checkpoints`` as (step, path), oldest first."""
    d = Path(exp_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_latest(exp_dir: str | Path) -> Path | None:
    """The newest periodic checkpoint that loads (a damaged file is skipped), or None."""
    for _, path in reversed(list_checkpoints(exp_dir)):
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            logging.getLogger("sqcodec.train").warning("skipping unreadable checkpoint: %s", e)
            continue
        return path
    return None


def prune_checkpoints(exp_dir: str | Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` periodic checkpoints (``keep_last <= 0`` keeps all)."""
    if keep_last <= 0:
        return
    for _, path in list_checkpoints(exp_dir)[:-keep_last]:
        try:
            path.unlink()
        except OSError:
            pass


def load_model(path: str | Path, map_location: str | torch.device = "cpu", builder=None):
    """Build the model described by a training checkpoint's config and load its weights.

    Returns ``(model, config)`` with the model in eval mode. ``builder`` defaults to
    :func:`sqcodec.model.build_model`.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    cfg = ckpt.get("config") or {}
    if builder is None:
        from sqcodec.model import build_model as builder
    model = builder(cfg.get("model", {}))
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg
