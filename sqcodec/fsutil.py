"""File-system helpers shared by every writer (audio, .codes, checkpoints, MUSHRA results)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def create_temp(directory: str | Path, prefix: str, suffix: str) -> tuple[int, str]:
    """Like :func:`tempfile.mkstemp`, but the file gets the permissions ``open(path, "w")`` gives (0o666
    less the umask, applied by the kernel): no process-wide ``os.umask`` juggling, which is not
    thread-safe (``encode --jobs`` and the MUSHRA server write from several threads), and exported
    models are as readable as any other file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = os.path.join(directory, f"{prefix}{os.urandom(5).hex()}{suffix}")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(directory))


def refuse_non_regular(path: Path) -> None:
    """Refuse to rename a file over a device, FIFO or folder (``--force`` onto ``/dev/null`` as root would
    otherwise replace the device node with a regular file)."""
    if path.exists() and not path.is_file() and not path.is_symlink():
        raise FileExistsError(
            errno.EEXIST, "exists and is not a regular file (refusing to replace it)", str(path)
        )


def atomic_write(path: str | Path, write_fn: Callable[[BinaryIO], object], parents: bool = False) -> Path:
    """Call ``write_fn(fileobj)`` on a temporary file beside ``path``, fsync it and rename it over ``path``:
    readers see the old or the new file, never a partial one.

    The file gets the permissions ``open(path, "w")`` gives (:func:`create_temp`). ``parents``: create
    missing parent folders first. An ``OSError`` of the write (disk full, no permission, read-only file
    system) is raised naming ``path``, and no temporary file is left."""
    path = Path(path)
    refuse_non_regular(path)
    directory = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    tmp = None
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temp(directory, prefix, ".tmp")
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(err, OSError) and err.errno is not None and _about_temp(err, directory, prefix):
            # name the target, not the temporary file (or, for a failed write(), no file at all)
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from None
        raise
    return path


def _about_temp(err: OSError, directory: Path, prefix: str) -> bool:
    """Whether ``err`` names no file or one of :func:`atomic_write`'s temporary files."""
    return err.filename is None or str(err.filename).startswith(os.path.join(directory, prefix))
