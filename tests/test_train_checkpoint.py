"""Checkpoints (atomic, weights-only, RNG capture, latest lookup) and the papers' LR schedules."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sqcodec.train import checkpoint as ck
from sqcodec.train.schedules import Schedule, build_optimizer


def draw():
    return (random.random(), float(np.random.rand()), float(torch.rand(1)))


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draw()
    state = ck.get_rng_state()
    expected = [draw() for _ in range(3)]
    ck.save_checkpoint({"rng": [state], "step": 5}, tmp_path / "c.pt")
    loaded = ck.load_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    draw()
    ck.set_rng_state(loaded["rng"][0])
    assert [draw() for _ in range(3)] == expected


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.pt"
    ck.atomic_torch_save({"a": torch.ones(2)}, target)

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        ck.atomic_write(target, boom)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_latest_skips_damaged_checkpoints_and_prune_keeps_last(tmp_path):
    for s in (10, 20, 30):
        ck.save_checkpoint({"step": s}, ck.checkpoint_path(tmp_path, s))
    ck.checkpoint_path(tmp_path, 40).write_bytes(b"not a checkpoint")  # e.g. a disk error
    assert ck.find_latest(tmp_path) == ck.checkpoint_path(tmp_path, 30)
    with pytest.raises(ck.CheckpointError, match="step_00000040"):
        ck.load_checkpoint(ck.checkpoint_path(tmp_path, 40))
    ck.prune_checkpoints(tmp_path, 2)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [30, 40]
    assert ck.find_latest(tmp_path / "nothing") is None


class Evil:
    pass


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"format": ck.FORMAT, "version": 1, "x": Evil()}, tmp_path / "e.pt")
    with pytest.raises(ck.CheckpointError):
        ck.load_checkpoint(tmp_path / "e.pt")


def _opt(lr=1.0, betas=(0.9, 0.999)):
    p = torch.nn.Parameter(torch.zeros(1))
    return build_optimizer(
        [p], {"name": "adam", "lr": lr, "betas": list(betas), "eps": 1e-8, "weight_decay": 0}
    )


def test_multistep_halves_at_milestones_per_iteration(tmp_path):
    opt = _opt(4e-4)
    sch = Schedule(opt, {"name": "multistep", "milestones": [3, 5], "gamma": 0.5})
    lrs = []
    for _ in range(7):
        lrs.append(sch.lr)
        opt.step()
        sch.after_step()
    assert lrs == pytest.approx([4e-4] * 3 + [2e-4] * 2 + [1e-4] * 2)
    torch.save(sch.state_dict(), tmp_path / "s.pt")
    sch2 = Schedule(_opt(4e-4), {"name": "multistep", "milestones": [3, 5], "gamma": 0.5})
    sch2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert sch2.scheduler.last_epoch == 7


def test_plateau_halves_after_patience_3(tmp_path):
    opt = _opt(1e-3, (0.9, 0.9))
    cfg = {"name": "plateau", "factor": 0.5, "patience": 3, "threshold": 1e-4, "min_lr": 0.0}
    sch = Schedule(opt, cfg)
    for _ in range(10):
        sch.after_step()  # iterations do not move a plateau schedule
    assert sch.lr == pytest.approx(1e-3)
    lrs = []
    for loss in (1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95):
        sch.after_validation(loss)
        lrs.append(sch.lr)
    assert lrs == pytest.approx([1e-3] * 5 + [5e-4] * 2)
    torch.save(sch.state_dict(), tmp_path / "s.pt")
    sch2 = Schedule(_opt(1e-3), cfg)
    sch2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert sch2.scheduler.best == pytest.approx(0.9)
