"""Train a HiFi-GAN vocoder on a sqcodec mel preset (ground-truth features of real audio).

::

    python -m sqcodec.vocoder.train --train train.txt --out exp/vocoder --size v3 --steps 100000 \
        --gan-start 0 [--valid valid.txt] [--resume]

Losses (HiFi-GAN eq. 6-7, SpeechBrain's recipe weights): generator ``1·L_adv (LSGAN) + 10·L_fm + 45·L_mel``
with the MPD + MSD discriminators of ``speechbrain.lobes.models.HifiGAN`` (discriminator stepped first);
``L_mel`` is the L1 distance between the preset's log-mels of the output and of the target. Before
``--gan-start`` (a warm-up for small compute budgets, as ParallelWaveGAN does) the generator trains
alone on ``45·L_mel + 45·L_stft``, with ``L_stft`` the multi-resolution STFT loss (spectral convergence +
log-magnitude L1 over FFT sizes 512/1024/2048, ParallelWaveGAN eq. 4-6). It is written here because
SpeechBrain's ``STFTLoss`` calls ``torch.stft`` without ``return_complex``, which torch >= 2.0 refuses.

AdamW(lr 2e-4, betas 0.8/0.99) for both networks, ExponentialLR(0.999) every 1000 steps... as in the
paper (per epoch there). Random ``--segment``-sample crops, features computed on the crop. Checkpoints
(``exp/checkpoints/step_*.pt``, weights-only, atomic) resume exactly where they stopped; ``--export``
writes the generator folder that :func:`sqcodec.vocoder.load_vocoder` reads.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..audio import load_mono
from ..audio.features import MelFrontEnd, get_preset
from ..train.checkpoint import (
    checkpoint_path,
    find_latest,
    get_rng_state,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from .hifigan import HifiGanVocoder, save_vocoder

log = logging.getLogger("sqcodec.vocoder.train")

STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))


def stft_loss(y_hat: Tensor, y: Tensor) -> Tensor:
    """Multi-resolution STFT loss (ParallelWaveGAN eq. 4-6): mean over resolutions of spectral
    convergence ``||Y| - |Ŷ||_F / ||Y||_F`` + ``mean|log|Y| - log|Ŷ||``."""
    total = y.new_zeros(())
    for n_fft, hop, win in STFT_RESOLUTIONS:
        w = torch.hann_window(win, device=y.device)
        s = [torch.stft(v, n_fft, hop, win, w, return_complex=True).abs().clamp_min(1e-7) for v in (y, y_hat)]
        sc = torch.linalg.norm(s[0] - s[1]) / torch.linalg.norm(s[0])
        mag = F.l1_loss(s[1].log(), s[0].log())
        total = total + sc + mag
    return total / len(STFT_RESOLUTIONS)


def read_list(path: Path) -> list[Path]:
    return [Path(x) for x in path.read_text(encoding="utf-8").split() if x and not x.startswith("#")]


class SegmentSampler:
    """Random fixed-length crops from a set of waves (file drawn in proportion to its length)."""

    def __init__(self, waves: list[np.ndarray], segment: int, seed: int) -> None:
        self.waves = waves
        lengths = np.array([len(w) for w in waves], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.segment = segment
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> Tensor:
        out = np.zeros((n, self.segment), dtype=np.float32)
        for i, k in enumerate(self.rng.choice(len(self.waves), size=n, p=self.p)):
            w = self.waves[k]
            if len(w) <= self.segment:
                out[i, : len(w)] = w
            else:
                a = int(self.rng.integers(0, len(w) - self.segment + 1))
                out[i] = w[a : a + self.segment]
        return torch.from_numpy(out)


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def evaluate(vocoder: HifiGanVocoder, frontend: MelFrontEnd, waves: list[np.ndarray]) -> float:
    """Mean log-mel L1 between whole validation files and their resynthesis."""
    vocoder.eval()
    errs = []
    with torch.no_grad():
        for w in waves:
            x = torch.from_numpy(w)[None]
            m = frontend(x)
            y = vocoder(m)[..., : x.shape[-1]]
            errs.append(F.l1_loss(frontend(y), m).item())
    vocoder.train()
    return float(np.mean(errs))


def train(args: argparse.Namespace) -> Path:
    from speechbrain.lobes.models.HifiGAN import (
        MelganFeatureLoss,
        MSEDLoss,
        MSEGLoss,
        MultiPeriodDiscriminator,
        MultiScaleDiscriminator,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    preset = get_preset(args.preset)
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    vocoder = HifiGanVocoder(preset, args.size).to(device)  # a bad size/hop fails before any audio is read
    files = read_list(Path(args.train))
    waves = [load_mono(f, preset.sample_rate)[0].astype(np.float32) for f in files]
    valid = (
        [load_mono(f, preset.sample_rate)[0].astype(np.float32) for f in read_list(Path(args.valid))]
        if args.valid
        else []
    )
    log.info("train: %d files, %.1f min", len(waves), sum(map(len, waves)) / preset.sample_rate / 60)

    mpd, msd = MultiPeriodDiscriminator().to(device), MultiScaleDiscriminator().to(device)
    frontend = MelFrontEnd(preset).to(device)
    opt_g = torch.optim.AdamW(vocoder.parameters(), lr=args.lr, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW([*mpd.parameters(), *msd.parameters()], lr=args.lr, betas=(0.8, 0.99))
    sampler = SegmentSampler(waves, args.segment, args.seed)
    adv_g, adv_d, fm = MSEGLoss(), MSEDLoss(), MelganFeatureLoss()
    step = 0
    resume = find_latest(out) if args.resume else None
    if resume is not None:
        ck = load_checkpoint(resume)
        vocoder.generator.load_state_dict(ck["generator"])
        mpd.load_state_dict(ck["mpd"])
        msd.load_state_dict(ck["msd"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        sampler.rng.bit_generator.state = json.loads(ck["sampler_rng"])
        set_rng_state(ck["rng"])
        step = int(ck["step"])
        log.info("resumed from %s at step %d", resume, step)

    def lr_at(s: int) -> float:
        return args.lr * (args.lr_decay ** (s // 1000))

    def save(final: bool = False) -> None:
        state = {
            "step": step,
            "generator": vocoder.generator.state_dict(),
            "mpd": mpd.state_dict(),
            "msd": msd.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "sampler_rng": json.dumps(sampler.rng.bit_generator.state),
            "rng": get_rng_state(),
            "config": vars(args) | {"preset": preset.name},
        }
        save_checkpoint(state, checkpoint_path(out, step))
        prune_checkpoints(out, 2)

    stop = {"flag": False}

    def on_signal(signum, _frame) -> None:
        log.warning("signal %d: stopping after this step (a checkpoint will be written)", signum)
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    jsonl = (out / "train.jsonl").open("a", encoding="utf-8")
    t0 = time.perf_counter()
    while step < args.steps and not stop["flag"]:
        for g in (*opt_g.param_groups, *opt_d.param_groups):
            g["lr"] = lr_at(step)
        y = sampler.batch(args.batch).to(device)
        mel = frontend(y)
        y_hat = vocoder(mel)[..., : y.shape[-1]]
        rec: dict[str, Any] = {"step": step + 1}
        gan = step >= args.gan_start
        if gan:
            d_loss = y.new_zeros(())
            for disc in (mpd, msd):
                real, _ = disc(y[:, None])
                fake, _ = disc(y_hat.detach()[:, None])
                d_loss = d_loss + sum(adv_d(f, r)[0] for f, r in zip(fake, real, strict=True))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            rec["d"] = d_loss.item()
        mel_loss = F.l1_loss(frontend(y_hat), mel)
        g_loss = 45.0 * mel_loss
        rec["mel"] = mel_loss.item()
        if gan:
            adv, feat = y.new_zeros(()), y.new_zeros(())
            for disc in (mpd, msd):
                fake, f_fake = disc(y_hat[:, None])
                with torch.no_grad():
                    _, f_real = disc(y[:, None])
                adv = adv + sum(adv_g(f) for f in fake)
                feat = feat + fm(f_fake, f_real)
            g_loss = g_loss + adv + 10.0 * feat
            rec["adv"], rec["fm"] = adv.item(), feat.item()
        else:
            s = stft_loss(y_hat, y)
            g_loss = g_loss + 45.0 * s
            rec["stft"] = s.item()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        step += 1
        rec["time"] = time.perf_counter() - t0
        if step % args.log_every == 0:
            jsonl.write(json.dumps(rec) + "\n")
            jsonl.flush()
            log.info("step %d %s", step, " ".join(f"{k} {v:.4g}" for k, v in rec.items() if k != "step"))
        if valid and step % args.val_every == 0:
            v = evaluate(vocoder, frontend, valid)
            jsonl.write(json.dumps({"split": "valid", "step": step, "mel_l1": v}) + "\n")
            log.info("step %d valid mel L1 %.4f", step, v)
        if step % args.ckpt_every == 0:
            save()
    save(final=True)
    jsonl.close()
    return out


def trained_vocoder(exp: Path) -> HifiGanVocoder:
    """The generator of the latest checkpoint of experiment ``exp``, with its training record."""
    latest = find_latest(exp)
    if latest is None:
        raise SystemExit(f"{exp}: no checkpoint to export")
    ck = load_checkpoint(latest)
    cfg = ck["config"]
    vocoder = HifiGanVocoder(cfg["preset"], cfg["size"])
    vocoder.generator.load_state_dict(ck["generator"])
    files = read_list(Path(cfg["train"]))
    step, gan_start = int(ck["step"]), int(cfg["gan_start"])
    vocoder.record = {
        "trainer": "sqcodec.vocoder.train",
        "size": cfg["size"],
        "steps": step,
        "gan_start": cfg["gan_start"],
        "gan_steps": max(0, step - gan_start),
        "losses": "45 mel L1 + 45 multi-resolution STFT (generator only)"
        if step <= gan_start
        else "HiFi-GAN (mel 45, adv 1, fm 10)",
        "batch": cfg["batch"],
        "segment": cfg["segment"],
        "lr": cfg["lr"],
        "train_files": len(files),
        "train_list": cfg.get("train_list_name") or Path(cfg["train"]).name,
        "commit": _git_commit(),
    }
    return vocoder


def export(args: argparse.Namespace) -> Path:
    """Write the generator of the latest checkpoint of ``--out`` as a vocoder folder ``--export``."""
    return save_vocoder(trained_vocoder(Path(args.out)), args.export)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sqcodec.vocoder.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="experiment folder (checkpoints, train.jsonl)")
    ap.add_argument("--train", help="list file of training audio paths")
    ap.add_argument("--valid", help="list file of validation audio paths")
    ap.add_argument("--preset", default="codec16k")
    ap.add_argument("--size", default="v3", help="v1 | v2 | v3")
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument(
        "--gan-start", type=int, default=0, help="generator-only (mel + STFT) steps before the GAN"
    )
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--segment", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lr-decay", type=float, default=0.999, help="ExponentialLR factor per 1000 steps")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--val-every", type=int, default=1000)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--export", help="write the latest checkpoint's generator to this vocoder folder and exit"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.export:
        print(export(args))
        return 0
    if not args.train:
        ap.error("--train is required")
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
