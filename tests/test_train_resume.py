"""Exact resume: a run stopped (or SIGKILLed) and resumed logs bit-identical per-step losses to an
uninterrupted run, and ends with identical weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_train_helpers import make_npy_corpus, tiny_cfg, train_losses, valid_losses

from sqcodec.train import checkpoint as ck
from sqcodec.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def run(cfg, exp, **kw):
    tr = Trainer(cfg, exp, **kw)
    try:
        tr.fit()
    finally:
        tr.close()
    return tr


def final_state(exp: Path) -> dict:
    return ck.load_checkpoint(ck.find_latest(exp))


def assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for i in sa:
        for k in sa[i]:
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)
    assert a["scheduler"] == b["scheduler"]
    assert a["best_val"] == b["best_val"] and a["best_step"] == b["best_step"]


@pytest.mark.parametrize(
    "schedule",
    [
        ["schedule.name=multistep", "schedule.milestones=[6, 9]"],
        ["schedule.name=plateau", "schedule.patience=0", "optim.betas=[0.9, 0.9]"],
    ],
)
def test_stop_and_resume_is_bit_exact(tmp_path, schedule):
    data = make_npy_corpus(tmp_path / "d")
    cfg = tiny_cfg(data, overrides=schedule)
    ref = tmp_path / "ref"
    run(cfg, ref)

    exp = tmp_path / "exp"
    tr = Trainer(cfg, exp)
    tr.fit(max_steps=7)  # stops after 7 steps, writing a checkpoint
    tr.close()
    # lose the stop checkpoint: the resume starts at step 4 while the log already holds steps 5..7
    ck.checkpoint_path(exp, 7).unlink()
    tr = Trainer(cfg, exp, resume=True)  # a fresh Trainer object
    assert tr.step == 4
    tr.fit()
    tr.close()

    losses = train_losses(exp)
    assert [s for s, _ in losses] == list(range(1, 13))
    assert losses == train_losses(ref)
    assert valid_losses(exp) == valid_losses(ref) and len(valid_losses(ref)) == 3
    assert_same_state(final_state(exp), final_state(ref))
    assert len((exp / "train.jsonl").read_text().splitlines()) == 12 + 3  # the cut log holds no duplicates


def test_resume_without_checkpoint_starts_fresh_and_rejects_other_model(tmp_path):
    data = make_npy_corpus(tmp_path / "d")
    cfg = tiny_cfg(data, overrides=["train.steps=4"])
    tr = Trainer(cfg, tmp_path / "exp", resume=True)
    assert tr.step == 0
    tr.fit()
    tr.close()
    other = tiny_cfg(data, overrides=["train.steps=8", "model.quantizer.num_layers=2"])
    from sqcodec.train.config import ConfigError

    with pytest.raises(ConfigError, match="model config differs"):
        Trainer(other, tmp_path / "exp", resume=True)
    # extending the run (train.steps) is allowed
    tr = Trainer(tiny_cfg(data, overrides=["train.steps=8"]), tmp_path / "exp", resume=True)
    assert tr.step == 4
    tr.fit()
    tr.close()
    assert [s for s, _ in train_losses(tmp_path / "exp")] == list(range(1, 9))


def logged_lrs(exp: Path) -> dict[int, float]:
    from sqcodec.train.telemetry import read_jsonl

    return {r["step"]: r["lr"] for r in read_jsonl(exp / "train.jsonl") if r["split"] == "train"}


def test_resume_with_another_lr_or_schedule_applies_it(tmp_path):
    """A constant-lr run resumed with a multistep schedule (e.g. to decay a converging run) logs, from the
    checkpoint on, the lrs of a run that had the new schedule from the start; an lr change alone applies."""
    data = make_npy_corpus(tmp_path / "d")
    tr = run(tiny_cfg(data, overrides=["train.steps=4", "optim.lr=1e-3"]), tmp_path / "exp")
    assert tr.schedule.lr == 1e-3
    decay = ["train.steps=8", "optim.lr=4e-4", "schedule.name=multistep", "schedule.milestones=[2, 6]"]
    run(tiny_cfg(data, overrides=decay), tmp_path / "exp", resume=True)
    ref = tmp_path / "ref"
    run(tiny_cfg(data, overrides=decay), ref)
    got, want = logged_lrs(tmp_path / "exp"), logged_lrs(ref)
    assert [got[s] for s in range(1, 5)] == [1e-3] * 4
    assert [got[s] for s in range(5, 9)] == pytest.approx([want[s] for s in range(5, 9)])
    assert want[5] == pytest.approx(2e-4) and want[8] == pytest.approx(1e-4)

    run(tiny_cfg(data, overrides=["train.steps=10", "optim.lr=5e-5"]), tmp_path / "exp", resume=True)
    assert logged_lrs(tmp_path / "exp")[9] == pytest.approx(5e-5)  # back to constant, at the new lr


DRIVER = textwrap.dedent(
    """
    import sys, time
    from sqcodec.model import build_model
    from sqcodec.train.trainer import train

    def builder(cfg):
        model = build_model(cfg)
        model.register_forward_pre_hook(lambda mod, args: time.sleep(0.03))  # slow enough to be killed
        return model

    train(sys.argv[1], out_dir=sys.argv[2], model_builder=builder)
    """
)


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory) -> dict:
    """Env for child pythons: same thread count as this process, bytecode cached across children."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact(tmp_path, subprocess_env):
    data = make_npy_corpus(tmp_path / "d")
    cfg = tiny_cfg(data, overrides=["train.steps=40", "train.ckpt_every=10", "train.val_every=10"])
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    (tmp_path / "driver.py").write_text(DRIVER)
    exp = tmp_path / "exp"

    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), str(cfg_path), str(exp)],
        env=subprocess_env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    try:
        while not ck.checkpoint_path(exp, 10).exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint written in time"
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = max(s for s, _ in train_losses(exp))
    assert 10 <= killed_at < 40

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqcodec.train",
            "--config",
            str(cfg_path),
            "--out",
            str(exp),
            "--resume",
            "-q",
        ],
        env=subprocess_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]

    ref = tmp_path / "ref"
    run(cfg, ref)  # uninterrupted, in this process
    assert train_losses(exp) == train_losses(ref)
    assert [s for s, _ in train_losses(exp)] == list(range(1, 41))
    assert valid_losses(exp) == valid_losses(ref)
    assert_same_state(final_state(exp), final_state(ref))


def test_fresh_start_refuses_an_exp_dir_with_checkpoints(tmp_path):
    from sqcodec.train.config import ConfigError

    data = make_npy_corpus(tmp_path / "d")
    cfg = tiny_cfg(data, overrides=["train.steps=4"])
    run(cfg, tmp_path / "exp")
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(cfg, tmp_path / "exp")
    tr = Trainer(cfg, tmp_path / "exp", resume=True)  # a finished run: nothing left to do
    assert tr.step == 4
    tr.fit()
    tr.close()
    assert [s for s, _ in train_losses(tmp_path / "exp")] == [1, 2, 3, 4]
