"""File-system helpers shared by every writer (audio, .codes, checkpoints, MUSHRA results)."""

from __future__ import annotations

import errno
import os
from pathlib import Path


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
