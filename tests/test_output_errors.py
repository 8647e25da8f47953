"""Output paths that cannot be written give one clear line, exit code 1 and no temporary files (DESIGN §6).

Every command that writes user-named outputs (``sqcodec encode``, ``decode``, ``train --out``, ``mushra
build --out`` and the recipe tools ``extract-feats``, ``compute-stats``, ``normalize``, ``wav-list``) is
pointed at:

* a path below a regular file (``NotADirectoryError``), in-process, on any machine;
* an existing FIFO with ``--force`` (an atomic rename would replace the node; as root onto ``/dev/null``
  it would replace the device), in-process;
* a full file system, a read-only file system and a folder without write permission (``chmod 0o500``),
  in a confined child process (``tests/output_failures.py``):

  - as root (tests run as root here, and root ignores ``chmod``): a private mount namespace
    (``unshare -m``) with a 64 KiB tmpfs filled to the last byte (real ``ENOSPC``) and a read-only tmpfs
    (``EROFS``); the permission case drops the capabilities that let root ignore file modes
    (``setpriv --bounding-set=-dac_override,-dac_read_search,-fowner``), so a root-owned ``0o500``
    folder refuses writes with ``EACCES`` as it would for any user. Nothing is mounted outside the
    child's namespace. (Writing to ``/dev/full`` is not used: the atomic writers rename a temporary file
    over the target, which as root would replace the device node itself.)
  - as another user: ``chmod 0o500`` directly, and ``RLIMIT_FSIZE`` = 0 as the stand-in for a full disk
    (every ``write()`` fails with ``EFBIG``, through the same code paths as ``ENOSPC``); no read-only case.
    (``SQCODEC_TEST_CONFINE=user`` picks this way as root too; run pytest under ``setpriv
    --bounding-set=-dac_override,-dac_read_search,-fowner`` then, so that modes apply.)

The line is ``sqcodec: error: <path>: <problem>`` (``error: <path>: <problem>`` for ``python -m
sqcodec.recipe_tools``), where ``<path>`` is the output (never a temporary file beside it or the input).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from helpers import MICRO_CODEC, TINY_CODEC, run_cli
from output_failures import ALLOWED_LEFTOVERS, OPS, leftovers, run_ops

from sqcodec import recipe_tools as rt
from sqcodec.codec import Codec, save_codec
from sqcodec.model import build_model

HERE = Path(__file__).resolve().parent
LIBRI = "speech/librispeech/test-other/2033"


@pytest.fixture(scope="module")
def inputs(realaudio, tmp_path_factory) -> dict[str, str]:
    """Everything the commands read: a tiny codec folder, an audio clip and its .codes, a training config
    on a small .npy corpus, MUSHRA reference/system folders, a wav.scp, a feats.scp and its stats."""
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    model = save_codec(Codec(build_model(TINY_CODEC), "codec16k", model_id="tiny"), root / "model")
    clips = sorted((realaudio / LIBRI).glob("*.flac"))[:2]
    ref, sys_ = root / "ref", root / "sys"
    ref.mkdir()
    sys_.mkdir()
    for f in clips:
        x, sr = sf.read(f, dtype="float32")
        sf.write(ref / f"{f.stem}.wav", x[: 2 * sr], sr)
        sf.write(sys_ / f"{f.stem}.wav", 0.5 * x[: 2 * sr], sr)
    audio = ref / f"{clips[0].stem}.wav"
    code, _, err = run_cli("encode", audio, root / "a.codes", "--model", model)
    assert code == 0, err
    npy = root / "npy"
    rng = np.random.default_rng(0)
    for i in range(6):
        (npy / f"spk{i % 2}").mkdir(parents=True, exist_ok=True)
        np.save(npy / f"spk{i % 2}" / f"u{i}.npy", rng.standard_normal((80, 60)).astype(np.float32))
    cfg = {
        "model": MICRO_CODEC,
        "data": {"train": str(npy), "valid_holdout": 2, "crop_frames": 16, "valid_multiple": 2},
        "train": {
            "steps": 2,
            "batch_size": 2,
            "log_every": 1,
            "val_every": 0,
            "ckpt_every": 1,
            "device": "cpu",
            "tensorboard": False,
            "plot": False,
        },
    }
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    (root / "wav.scp").write_text("".join(f"u{i} {p}\n" for i, p in enumerate(sorted(ref.glob("*.wav")))))
    rt.extract_feats(root / "wav.scp", "codec16k", root / "feats")
    rt.compute_stats(root / "feats.scp", root / "stats.json")
    return {
        "model": str(model),
        "audio": str(audio),
        "codes": str(root / "a.codes"),
        "config": str(root / "cfg.yaml"),
        "mushra_ref": str(ref),
        "mushra_sys": str(sys_),
        "wav_scp": str(root / "wav.scp"),
        "feats_scp": str(root / "feats.scp"),
        "stats": str(root / "stats.json"),
    }


def check(name: str, result: dict, target: Path, problem: str | None = None) -> None:
    """One line naming a path under ``target`` (the output, not a temporary file), exit code 1, nothing
    left but what :data:`ALLOWED_LEFTOVERS` allows."""
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert result["code"] == 1, f"{name}: exit code {result['code']}: {result['stderr']}"
    assert len(lines) == 1, f"{name}: want one line, got:\n{result['stderr']}"
    m = re.match(r"^(?:sqcodec: )?error: (\S+): (.+)$", lines[0])
    assert m, f"{name}: not '<prefix> error: <path>: <problem>': {lines[0]}"
    named = Path(m.group(1))
    assert named == target or target in named.parents, f"{name}: names {named}, not the output: {lines[0]}"
    assert not any(part.startswith(".") for part in named.relative_to(target).parts), lines[0]  # no temp
    if problem is not None:
        assert problem in m.group(2), f"{name}: want {problem!r}: {lines[0]}"
    left = set(result["left"])
    assert left <= ALLOWED_LEFTOVERS.get(name, set()), f"{name}: left {sorted(left)}"
    assert not [p for p in left if Path(p).name.startswith(".")], f"{name}: temporary files {left}"


# ------------------------------------------------------------------------------------- in-process cases
def test_output_below_a_regular_file(inputs, tmp_path):
    """``OUT/...`` where OUT is a regular file: every command says so in one line, nothing is written."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    target = blocker / "sub"
    results = {}
    for name, op in OPS.items():
        code, err = op({k: Path(v) for k, v in inputs.items()}, target)
        results[name] = {"code": code, "stderr": err, "left": []}
    for name, r in results.items():
        check(name, r, target, problem="directory")
    assert blocker.read_text() == "not a folder\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "a_file"
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_force_never_replaces_a_fifo_or_device(inputs, tmp_path):
    """``--force`` onto something that is not a regular file is refused (an atomic rename would replace
    the node: as root, ``--force`` onto /dev/null would have replaced the device with a file)."""
    fifo = tmp_path / "x.codes"
    os.mkfifo(fifo)
    code, _, err = run_cli("encode", inputs["audio"], fifo, "--model", inputs["model"], "--force")
    check("encode", {"code": code, "stderr": err, "left": []}, fifo, problem="not a regular file")
    fifo_wav = tmp_path / "x.wav"
    os.mkfifo(fifo_wav)
    code, _, err = run_cli(
        "decode", inputs["codes"], fifo_wav, "--model", inputs["model"], "--vocoder", "griffinlim", "--force"
    )
    check("decode", {"code": code, "stderr": err, "left": []}, fifo_wav, problem="not a regular file")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_ISFIFO(fifo_wav.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.codes", "x.wav"]


def test_writers_never_touch_the_process_umask(inputs, tmp_path, monkeypatch):
    """The atomic writers create their temporary files with mode 0o666 and let the kernel apply the umask;
    they never set the process umask (``os.umask(0)`` and back is not thread-safe: with ``encode --jobs``
    two threads could leave the process at umask 0 and every later file world-writable)."""
    from sqcodec.audio import write_audio
    from sqcodec.bitstream import read_codes, write_codes
    from sqcodec.mushra.common import write_text_atomic
    from sqcodec.train.checkpoint import atomic_write_text

    umask = os.umask(0o027)
    try:

        def no_umask(*_):
            raise AssertionError("os.umask called")

        monkeypatch.setattr(os, "umask", no_umask)
        write_codes(tmp_path / "a.codes", read_codes(inputs["codes"]))
        write_audio(tmp_path / "a.wav", np.zeros(160, np.float32), 16000)
        write_text_atomic(tmp_path / "a.csv", "x\n")
        atomic_write_text(tmp_path / "a.json", "{}\n")
        monkeypatch.undo()
    finally:
        os.umask(umask)
    for name in ("a.codes", "a.wav", "a.csv", "a.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name  # 0o666 & ~0o027


# ------------------------------------------------------------------------- real failures, in a child
def _can_confine_as_root() -> str | None:
    """None if a private mount namespace (tmpfs mounts) and capability dropping work here, else why not."""
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"no {tool}"
    r = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
        capture_output=True,
        text=True,
    )
    return None if r.returncode == 0 else f"cannot mount a tmpfs in a private namespace: {r.stderr.strip()}"


ROOT_SETUP = r"""
set -e
mount -t tmpfs -o size=64k,mode=0777 tmpfs "$1"
dd if=/dev/zero of="$1/.fill" bs=4k 2>/dev/null || true
mount -t tmpfs -o ro,size=16k,mode=0777 tmpfs "$2"
chmod 0500 "$3"
shift 3
exec setpriv --bounding-set=-dac_override,-dac_read_search,-fowner "$@"
"""


@pytest.fixture(scope="module")
def confined(inputs, tmp_path_factory) -> dict:
    """Run every command into a full disk, a read-only file system and a 0o500 folder (see the module
    docstring for how); returns ``{case: {command: result}}`` plus ``{"_how": description}``."""
    root = tmp_path_factory.mktemp("confined")
    slugs = {"disk full": "full", "read-only file system": "readonly", "no write permission": "denied"}
    dirs = {case: root / slug for case, slug in slugs.items()}
    for d in dirs.values():
        d.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = [sys.executable, str(HERE / "output_failures.py"), str(root / "spec.json")]
    if os.geteuid() == 0 and os.environ.get("SQCODEC_TEST_CONFINE") != "user":
        why = _can_confine_as_root()
        if why is not None:
            pytest.skip(f"running as root and {why}: cannot make a full or read-only file system")
        cases = {case: {"dir": str(d)} for case, d in dirs.items()}
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", ROOT_SETUP, "sh"]
        cmd += [str(dirs["disk full"]), str(dirs["read-only file system"]), str(dirs["no write permission"])]
        cmd += child
        how = "root: private mount namespace, 64 KiB tmpfs filled, read-only tmpfs, DAC capabilities dropped"
    else:
        del dirs["read-only file system"]
        cases = {
            "disk full": {"dir": str(dirs["disk full"]), "fsize": True},
            "no write permission": {"dir": str(dirs["no write permission"])},
        }
        dirs["no write permission"].chmod(0o500)
        cmd = child
        how = "user: RLIMIT_FSIZE=0 for the full disk, chmod 0o500; no read-only case"
    (root / "spec.json").write_text(json.dumps({"inputs": inputs, "cases": cases}))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=HERE.parent)
    finally:
        with contextlib.suppress(OSError):
            dirs["no write permission"].chmod(0o700)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads(r.stdout.rsplit("\nRESULT ", 1)[1])
    for case, d in dirs.items():  # the real folders (under the mounts) hold nothing either
        assert leftovers(d) == [], (case, leftovers(d))
    return {**result, "_how": how, "_dirs": {k: str(v) for k, v in dirs.items()}}


PROBLEMS = {
    "disk full": ("No space left on device", "File too large"),
    "read-only file system": ("Read-only file system",),
    "no write permission": ("Permission denied",),
}


@pytest.mark.parametrize("case", list(PROBLEMS))
@pytest.mark.parametrize("name", list(OPS))
def test_unwritable_output(confined, case, name):
    if case not in confined:
        pytest.skip(f"{case}: not possible here ({confined['_how']})")
    result = confined[case][name]
    target = Path(confined["_dirs"][case])
    check(name, result, target)
    line = result["stderr"].strip()
    assert any(p in line for p in PROBLEMS[case]), f"{name}, {case}: the problem is not stated: {line}"


def test_recipe_tools_write_errors_leave_no_table(inputs, tmp_path, monkeypatch):
    """extract-feats failing mid-way (here: the third utterance's file vanished) removes its ark and
    temporary scp, and an older table of the same name is gone before the ark is rewritten, so no scp ever
    points into a half-written ark; a re-run then gives the same bytes as a clean run."""
    scp = tmp_path / "wav.scp"
    wavs = dict(rt.read_table(Path(inputs["wav_scp"])))
    src = sorted(Path(inputs["mushra_ref"]).glob("*.wav"))
    (tmp_path / "c.wav").write_bytes(src[0].read_bytes())
    scp.write_text("".join(f"{k} {v}\n" for k, v in wavs.items()) + f"u9 {tmp_path / 'c.wav'}\n")
    rt.extract_feats(scp, "codec16k", tmp_path / "out" / "feats")
    clean = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert sorted(clean) == ["feats.ark", "feats.scp", "feats.utt2num_frames"]
    (tmp_path / "c.wav").rename(tmp_path / "c.moved")
    with pytest.raises(ValueError, match="c.wav"):
        rt.extract_feats(scp, "codec16k", tmp_path / "out" / "feats")
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "c.moved").rename(tmp_path / "c.wav")
    rt.extract_feats(scp, "codec16k", tmp_path / "out" / "feats")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == clean


def test_run_ops_in_process_smoke(inputs, tmp_path):
    """The child's runner itself, into a writable folder: every command succeeds (so a refusal in the
    confined cases comes from the confinement)."""
    results = run_ops(inputs, tmp_path)
    assert {k: v["code"] for k, v in results.items()} == dict.fromkeys(OPS, 0), results
