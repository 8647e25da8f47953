"""The image recipes end to end on tiny synthetic corpora in their download formats: egs/<corpus>/run.sh
stages 0-3 (split files, a 2-step training on the CPU, evaluation with grid, summary), and a bad corpus.

Each full run starts five Python processes (about 25 s of CPU), so the five are ``slow``; the default suite
keeps the bad-corpus run (stages 0 and 1 of run.sh), and covers every reader and every config quickly in
test_image_data.py and test_image_models.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from image_corpora import write_celeba, write_celeba_mask, write_cifar, write_mnist

REPO = Path(__file__).resolve().parents[1]
TINY = "--set train.steps=2 train.val_every=2 train.ckpt_every=2 train.log_every=1 train.batch_size=4"

CASES = {
    "mnist": (write_mnist, "sqvae_gauss1", ["mse", "ssim"]),
    "fashion_mnist": (write_mnist, "vqvae_ema", ["mse", "ssim"]),
    "cifar10": (write_cifar, "sqvae2", ["mse", "ssim", "perplexity_l2"]),
    "celeba": (write_celeba, "sqvae_gauss1", ["mse", "ssim"]),
    "celeba_mask": (write_celeba_mask, "vmf_sqvae", ["accuracy", "miou"]),
}


def run_recipe(corpus: str, work: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    cmd = ["bash", str(REPO / "egs" / corpus / "run.sh"), "--ngpu", "0", *args]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("corpus", sorted(CASES))
def test_recipe_stages_0_to_3(corpus, tmp_path):
    writer, conf, metrics = CASES[corpus]
    db = writer(tmp_path / "db")
    r = run_recipe(
        corpus, tmp_path, "--db_root", str(db), "--conf", f"conf/{conf}.yaml", "--train_args", TINY
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for split in ("train", "valid", "test"):
        assert (tmp_path / "data" / f"{split}.npz").is_file()
    out = tmp_path / "exp" / conf / "eval_test"
    res = json.loads((out / "metrics.json").read_text())
    assert res["n_images"] > 0 and all(m in res for m in metrics), res
    assert (out / "recon.png").stat().st_size > 0
    assert (tmp_path / "exp" / conf / "best.pt").is_file()
    summary = (tmp_path / "exp" / "summary_test.md").read_text()
    assert summary.startswith("| system |") and f"| {conf} |" in summary
    if corpus != "celeba_mask":
        assert "skipped: LPIPS" in r.stdout or res.get("lpips") is not None


def test_bad_corpus_stops_at_stage_0_naming_file_and_log(tmp_path):
    db = write_mnist(tmp_path / "db", gz=False)
    (db / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + bytes(20))
    r = run_recipe("mnist", tmp_path, "--db_root", str(db), "--stop_stage", "0")
    assert r.returncode != 0
    assert "data/log/prepare.log" in r.stderr
    log = (tmp_path / "data" / "log" / "prepare.log").read_text()
    assert "train-images-idx3-ubyte: truncated IDX file" in log
    assert not list((tmp_path / "data").glob("*.npz"))
    r = run_recipe("mnist", tmp_path, "--stage", "1", "--stop_stage", "1")
    assert r.returncode != 0 and "data/train.npz: missing (run stage 0)" in r.stderr
