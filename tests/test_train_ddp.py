"""DDP on CPU (gloo): 2 ranks on batches of B end with the parameters of 1 process on batches of 2B."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from test_train_helpers import (
    REAL_MODEL,
    build_standin,
    make_npy_corpus,
    tiny_cfg,
    train_losses,
    valid_losses,
)

from sqcodec.train import checkpoint as ck
from sqcodec.train.distributed import init_distributed
from sqcodec.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
STANDIN = {"n_mels": 80, "hidden": 6, "noise": 0.0}


def _worker(rank: int, world: int, init_file: str, cfg: dict, exp: str, out: str, standin: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        info = init_distributed("cpu")
        assert (info.rank, info.world_size, info.backend) == (rank, world, "gloo")
        tr = Trainer(cfg, exp, model_builder=build_standin if standin else None, dist_info=info)
        tr.fit()
        torch.save(tr.module.state_dict(), Path(out) / f"rank{rank}.pt")
        tr.close()
    finally:
        dist.destroy_process_group()


def run_ddp(tmp_path: Path, cfg: dict, standin: bool, world: int = 2) -> Path:
    exp, out = tmp_path / "ddp", tmp_path / "out"
    out.mkdir()
    mp.start_processes(
        _worker,
        args=(world, str(tmp_path / "init"), cfg, str(exp), str(out), standin),
        nprocs=world,
        start_method="fork",
    )
    return exp


def test_two_gloo_ranks_match_one_process_on_the_global_batch(tmp_path):
    data = make_npy_corpus(tmp_path / "d")
    over = [
        "train.steps=6",
        "train.ckpt_every=3",
        "train.val_every=3",
        "schedule.name=multistep",
        "schedule.milestones=[4]",
    ]
    cfg_ddp = tiny_cfg(data, model=STANDIN, overrides=[*over, "train.batch_size=2"])
    cfg_one = tiny_cfg(data, model=STANDIN, overrides=[*over, "train.batch_size=4"])
    exp = run_ddp(tmp_path, cfg_ddp, standin=True)

    tr = Trainer(cfg_one, tmp_path / "one", model_builder=build_standin)
    tr.fit()
    tr.close()
    ref = tr.module.state_dict()
    r0 = torch.load(tmp_path / "out" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "out" / "rank1.pt", weights_only=True)
    moved = False
    for k in ref:
        assert torch.equal(r0[k], r1[k]), k  # DDP keeps ranks in lock step
        torch.testing.assert_close(r0[k], ref[k], atol=1e-6, rtol=0)
        moved |= not torch.equal(ref[k], build_standin(STANDIN).state_dict()[k])
    assert moved
    # rank 0 alone logged: the mean loss over ranks equals the single process's global-batch loss
    a, b = train_losses(exp), train_losses(tmp_path / "one")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 7))
    torch.testing.assert_close(
        torch.tensor([x for _, x in a]), torch.tensor([x for _, x in b]), rtol=1e-5, atol=0
    )
    torch.testing.assert_close(
        torch.tensor([x for _, x in valid_losses(exp)]),
        torch.tensor([x for _, x in valid_losses(tmp_path / "one")]),
    )
    saved = ck.load_checkpoint(ck.find_latest(exp))
    assert saved["data"]["global_batch"] == 4 and saved["data"]["world_size"] == 2
    assert len(saved["rng"]) == 2  # every rank's RNG state, for exact resume


def test_real_model_under_ddp_keeps_ranks_identical(tmp_path):
    """The codec model all-reduces its pooled σ̂² in training and validation; ranks stay in step."""
    data = make_npy_corpus(tmp_path / "d")
    cfg = tiny_cfg(
        data, model=REAL_MODEL, overrides=["train.steps=4", "train.ckpt_every=2", "train.val_every=2"]
    )
    exp = run_ddp(tmp_path, cfg, standin=False)
    r0 = torch.load(tmp_path / "out" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "out" / "rank1.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    assert [s for s, _ in train_losses(exp)] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(x)) for _, x in train_losses(exp) + valid_losses(exp))

    # resuming the DDP run with the same world size continues from its last checkpoint
    cfg6 = tiny_cfg(
        data, model=REAL_MODEL, overrides=["train.steps=6", "train.ckpt_every=2", "train.val_every=2"]
    )
    shutil.rmtree(tmp_path / "out")
    (tmp_path / "init").unlink(missing_ok=True)
    exp_out = tmp_path / "out"
    exp_out.mkdir()
    mp.start_processes(
        _resume_worker,
        args=(2, str(tmp_path / "init"), cfg6, str(exp), str(exp_out)),
        nprocs=2,
        start_method="fork",
    )
    assert [s for s, _ in train_losses(exp)] == list(range(1, 7))


def _resume_worker(rank: int, world: int, init_file: str, cfg: dict, exp: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        tr = Trainer(cfg, exp, resume=True, dist_info=init_distributed("cpu"))
        assert tr.step == 4
        tr.fit()
        tr.close()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_launches_the_module(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this python")
    data = make_npy_corpus(tmp_path / "d")
    cfg = tiny_cfg(data, overrides=["train.steps=4", "train.ckpt_every=2", "train.val_every=2"])
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "sqcodec.train",
            "--config",
            str(cfg_path),
            "--out",
            str(tmp_path / "exp"),
            "-q",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert [s for s, _ in train_losses(tmp_path / "exp")] == [1, 2, 3, 4]
    assert ck.load_checkpoint(ck.find_latest(tmp_path / "exp"))["data"]["world_size"] == 2
