"""A recipe stage killed mid-way and re-run gives the same outputs as a run that was never interrupted.

The mini_librispeech recipe (with ``--norm standardise``, so stage 2 runs normalisation jobs too) is run
on a corpus rebuilt from the shared real recordings. One copy of the work folder runs stages 1-2 straight
through. The other has stage 1 SIGKILLed while a feature-extraction job is half-way through its ark, is
re-run, then has stage 2 SIGTERMed while a normalisation job is writing, and is re-run again. Every file
under ``dump/`` (tables, arks byte for byte, stats, split lists; logs excepted) must then equal the
uninterrupted run's, and no temporary file may be left. Each stage starts by removing its output folder,
and every table is written to a temporary name and renamed, which is what makes this hold.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_recipes import REPO, build_mini_librispeech, run_recipe

pytestmark = pytest.mark.slow

STAGE = ("--nj", "2", "--norm", "standardise")


def _start(work: Path, db: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    cmd = ["bash", str(REPO / "egs" / "mini_librispeech" / "run.sh"), "--db_root", str(db), *STAGE, *extra]
    return subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _kill_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 300) -> None:
    """Send ``sig`` to the recipe's whole process group as soon as ``ready()``; fail if it ends first."""
    t_end = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the stage finished before it could be interrupted"
            assert time.monotonic() < t_end, "timed out waiting for the stage to start writing"
            time.sleep(0.005)
        os.killpg(proc.pid, sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    # the runner's jobs are in the same process group: none may still be writing
    deadline = time.monotonic() + 30
    while _alive_in_group(proc.pid):
        assert time.monotonic() < deadline, "processes of the killed stage are still running"
        time.sleep(0.05)


def _alive_in_group(pgid: int) -> bool:
    """Whether a live (not zombie) process of process group ``pgid`` exists (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


def _nonempty(path: Path):
    return lambda: path.is_file() and path.stat().st_size > 0


def _outputs(work: Path) -> dict[str, bytes]:
    """Every file under dump/ except logs, with the work folder's path written as ``WORK``."""
    root = str(work.resolve()).encode()
    return {
        str(p.relative_to(work)): p.read_bytes().replace(root, b"WORK")
        for p in sorted((work / "dump").rglob("*"))
        if p.is_file() and "log" not in p.relative_to(work).parts
    }


def test_killed_stages_rerun_to_identical_outputs(realaudio, tmp_path):
    db = tmp_path / "db"
    build_mini_librispeech(realaudio, db, n_train=8, n_dev=3)
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir()
    run_recipe("mini_librispeech", ref, db, "--stage", "0", "--stop_stage", "0")
    shutil.copytree(ref, work)

    run_recipe("mini_librispeech", ref, db, "--stage", "1", "--stop_stage", "2", *STAGE[2:])
    expected = _outputs(ref)
    assert "dump/train/norm/feats.scp" in expected and "dump/dev/norm/feats.1.ark" in expected

    # stage 1, SIGKILL while job 2 of the train set has written part of its ark
    proc = _start(work, db, "--stage", "1", "--stop_stage", "2")
    _kill_when(proc, _nonempty(work / "dump/train/raw/feats.2.ark"), signal.SIGKILL)
    raw = work / "dump/train/raw"
    assert not (raw / "feats.scp").exists()  # killed before the set's table was merged
    assert not (work / "dump/train/stats.json").exists()
    run_recipe("mini_librispeech", work, db, "--stage", "1", "--stop_stage", "1", *STAGE[2:])

    # stage 2, SIGTERM while a normalisation job of the train set is writing
    proc = _start(work, db, "--stage", "2", "--stop_stage", "2")
    _kill_when(proc, _nonempty(work / "dump/train/norm/feats.1.ark"), signal.SIGTERM)
    assert not (work / "dump/train/norm/feats.scp").exists()
    run_recipe("mini_librispeech", work, db, "--stage", "2", "--stop_stage", "2", *STAGE[2:])

    got = _outputs(work)
    assert sorted(got) == sorted(expected)
    different = [name for name in expected if got[name] != expected[name]]
    assert different == [], f"differ from the uninterrupted run: {different}"
    temps = [p for p in (work / "dump").rglob(".*") if ".tmp" in p.name]
    assert temps == []
