"""Provenance of benchmark and experiment records: date, machine, git commit and package versions.

Every ``tools/bench_*.py`` JSON record carries these so that a number can be traced to the code, the
libraries and the hardware that produced it.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed distribution versions (``None`` for a missing one)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(repo: Path = REPO) -> dict[str, object]:
    """``{"commit": sha or None, "dirty": tracked files modified?}`` of the checkout."""

    def run(*cmd: str) -> str | None:
        try:
            res = subprocess.run(["git", *cmd], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch: Any, device: Any) -> dict[str, object]:
    """Platform, CPU, thread settings, torch version, device name and the load average now."""
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "device": str(device),
        "device_name": cpu_model(),
        "cuda_available": torch.cuda.is_available(),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    if getattr(device, "type", str(device)) == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def set_threads(threads: int | None) -> None:
    """Pin OpenMP and torch intra-op threads (call before heavy work; ``None`` leaves the defaults)."""
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def bench_record(
    benchmark: str, args: Any, packages: Iterable[str], argv: list[str] | None, device: str = "cpu"
) -> dict[str, Any]:
    """The provenance part of a benchmark's JSON record: name, date, machine, git, packages, command
    (``argv`` as given to ``main``, else the process's) and the parsed arguments."""
    import sys

    import torch

    return {
        "benchmark": benchmark,
        "date": utc_now(),
        "machine": machine_info(torch, torch.device(device)),
        "git": git_info(),
        "packages": package_versions(packages),
        "command": [sys.executable, *sys.argv] if argv is None else ["main", *argv],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def write_outputs(record: dict, table: str, json_path: Path | None, markdown_path: Path | None) -> None:
    """Write the JSON record and the markdown table where asked (parents created), and print the table."""
    import json

    for path, text in ((json_path, json.dumps(record, indent=2) + "\n"), (markdown_path, table)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    print(table)
