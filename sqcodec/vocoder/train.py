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
paper (per epoch there). Random ``--segment``-sample crops, features computed on the crop.
``--init-generator FOLDER`` starts the generator from an exported vocoder (e.g. the shipped one) to
continue its training. ``--codec MODEL`` fine-tunes on what that codec decodes from its own codes of the
training audio (at ``--codec-layers``, one drawn per crop) instead of on the ground-truth features, with
the real audio as the target: the vocoder learns the codec's output, as HiFi-GAN §4.4 fine-tunes on a
TTS model's output. Checkpoints
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
from ..audio.features import MelFrontEnd, MelPreset, get_preset
from ..train.checkpoint import (
    checkpoint_path,
    find_latest,
    get_rng_state,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from .hifigan import HifiGanVocoder, load_vocoder, save_vocoder

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
    """Random fixed-length crops from a set of waves (file drawn in proportion to its length), starting
    at a multiple of ``align`` samples (the hop, when crops must line up with precomputed frames)."""

    def __init__(self, waves: list[np.ndarray], segment: int, seed: int, align: int = 1) -> None:
        self.waves = waves
        lengths = np.array([len(w) for w in waves], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.segment = segment
        self.align = align
        self.rng = np.random.default_rng(seed)

    def picks(self, n: int) -> list[tuple[int, int]]:
        """``n`` crops as (file index, start sample)."""
        out = []
        for k in self.rng.choice(len(self.waves), size=n, p=self.p):
            room = len(self.waves[k]) - self.segment
            a = 0 if room <= 0 else self.align * int(self.rng.integers(0, room // self.align + 1))
            out.append((int(k), a))
        return out

    def crops(self, picks: list[tuple[int, int]]) -> Tensor:
        out = np.zeros((len(picks), self.segment), dtype=np.float32)
        for i, (k, a) in enumerate(picks):
            w = self.waves[k][a : a + self.segment]
            out[i, : len(w)] = w
        return torch.from_numpy(out)


class CodecFeatures:
    """The features a codec decodes from its own codes of each training file, at each of ``layers``
    (0 = the ground-truth features): the vocoder's input when it is fine-tuned on the codec's output
    ("ground-truth-aligned" features, HiFi-GAN §4.4), while its target stays the real audio."""

    def __init__(
        self, codec_path: str, waves: list[np.ndarray], preset: MelPreset, layers: list[int]
    ) -> None:
        from ..codec import load_codec

        codec = load_codec(codec_path, vocoder=None)
        if codec.preset.to_dict() != preset.to_dict():
            raise SystemExit(f"{codec_path}: the codec's preset {codec.preset.name!r} is not the vocoder's")
        bad = [n for n in layers if not 0 <= n <= codec.num_layers]
        if bad or not layers:
            raise SystemExit(
                f"--codec-layers must be in 0..{codec.num_layers} (0 = ground truth), got {layers}"
            )
        self.layers = layers
        self.model_id = codec.model_id
        self.model_sha256 = codec.model_sha256
        frontend = MelFrontEnd(preset)
        self.features: list[list[Tensor]] = []  # [file][choice] -> (n_mels, frames)
        for w in waves:
            frames = preset.num_frames(len(w))
            codes = codec.encode_wave(w) if any(layers) else None
            with torch.no_grad():
                per = [
                    frontend(torch.from_numpy(w)[None])[0]
                    if n == 0
                    else codec.decode(codes, n, length=frames)[0]
                    for n in layers
                ]
            self.features.append([f.float() for f in per])

    def batch(self, picks: list[tuple[int, int]], frames: int, hop: int, rng: np.random.Generator) -> Tensor:
        """``(B, n_mels, frames)`` from the crops' first frame on, one layer count drawn per crop."""
        choice = rng.integers(0, len(self.layers), size=len(picks))
        return torch.stack(
            [
                self.features[k][c][:, a // hop : a // hop + frames]
                for (k, a), c in zip(picks, choice, strict=True)
            ]
        )


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


def init_from_exported(vocoder: HifiGanVocoder, folder: str | Path) -> dict[str, Any]:
    """Start ``vocoder`` (training form, weight norm on) from an exported vocoder folder, whose weights
    are folded (``w = g·v/||v||`` already multiplied out): each weight-normed convolution gets the
    folded ``w`` through the parametrization's right inverse (``g = ||w||``, ``v = w``), so the
    generator computes exactly what the exported one does. Returns the folder's training record."""
    from torch.nn.utils import parametrize

    source = load_vocoder(folder)
    if (
        source.generator_config != vocoder.generator_config
        or source.preset.to_dict() != vocoder.preset.to_dict()
    ):
        raise SystemExit(f"{folder}: its generator or preset differs from this run's (--size/--preset)")
    folded = dict(source.generator.state_dict())
    with torch.no_grad():
        for name, module in vocoder.generator.named_modules():
            if parametrize.is_parametrized(module, "weight"):
                module.weight = folded.pop(f"{name}.weight")
        missing, unexpected = vocoder.generator.load_state_dict(folded, strict=False)
    missing = [k for k in missing if ".parametrizations.weight." not in k]
    if missing or unexpected:
        raise SystemExit(f"{folder}: weights do not fit the generator ({(missing + unexpected)[0]})")
    return dict(source.record)


def evaluate(
    vocoder: HifiGanVocoder,
    frontend: MelFrontEnd,
    waves: list[np.ndarray],
    inputs: list[Tensor] | None = None,
) -> float:
    """Mean log-mel L1 between whole validation files and their resynthesis from their features (or from
    ``inputs``, e.g. a codec's decoded features)."""
    vocoder.eval()
    errs = []
    with torch.no_grad():
        for i, w in enumerate(waves):
            x = torch.from_numpy(w)[None]
            m = frontend(x)
            y = vocoder(m if inputs is None else inputs[i][None])[..., : x.shape[-1]]
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
    codec_feats = valid_feats = None
    if args.codec:
        if args.segment % preset.hop_length:
            raise SystemExit(f"--segment {args.segment} must be a multiple of the hop ({preset.hop_length})")
        waves = [np.pad(w, (0, max(0, args.segment - len(w)))) for w in waves]
        layers = [int(x) for x in str(args.codec_layers).split(",") if x.strip()]
        codec_feats = CodecFeatures(args.codec, waves, preset, layers)
        if valid:  # validation on the codec's output at its most layers
            valid_feats = [f[-1] for f in CodecFeatures(args.codec, valid, preset, [max(layers)]).features]
        args.codec_inputs = {  # for the exported record
            "codec": {"model_id": codec_feats.model_id, "model_sha256": codec_feats.model_sha256},
            "layers": layers,
        }
        log.info("inputs: features decoded by %s at layers %s", codec_feats.model_id, layers)
    sampler = SegmentSampler(waves, args.segment, args.seed, preset.hop_length if codec_feats else 1)
    frames = args.segment // preset.hop_length + 1  # what the front-end gives for a crop (centred)
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
        if ck["config"].get("init_record"):
            args.init_record = ck["config"]["init_record"]  # keep the record of what it started from
        log.info("resumed from %s at step %d", resume, step)
    elif args.init_generator:
        args.init_record = init_from_exported(vocoder, args.init_generator)
        log.info(
            "generator initialised from %s (%s steps)", args.init_generator, args.init_record.get("steps")
        )

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
        picks = sampler.picks(args.batch)
        y = sampler.crops(picks).to(device)
        mel = frontend(y)  # the target; also the input unless the codec's features are
        inputs = (
            mel if codec_feats is None else codec_feats.batch(picks, frames, preset.hop_length, sampler.rng)
        )
        y_hat = vocoder(inputs.to(device))[..., : y.shape[-1]]
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
            v = evaluate(vocoder, frontend, valid, valid_feats)
            jsonl.write(json.dumps({"split": "valid", "step": step, "mel_l1": v}) + "\n")
            jsonl.flush()
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
    before = cfg.get("init_record") or {}
    vocoder.record = {
        "trainer": "sqcodec.vocoder.train",
        "size": cfg["size"],
        "steps": step + int(before.get("steps", 0)),
        "gan_start": cfg["gan_start"],
        "gan_steps": max(0, step - gan_start) + int(before.get("gan_steps", 0)),
        "losses": "45 mel L1 + 45 multi-resolution STFT (generator only)"
        if step <= gan_start
        else "HiFi-GAN (mel 45, adv 1, fm 10)",
        "batch": cfg["batch"],
        "segment": cfg["segment"],
        "lr": cfg["lr"],
        "lr_decay_per_1000_steps": cfg.get("lr_decay"),
        "train_files": len(files),
        "train_list": cfg.get("train_list_name") or Path(cfg["train"]).name,
        "commit": _git_commit(),
    }
    if cfg.get("codec_inputs"):
        vocoder.record["inputs"] = cfg["codec_inputs"]
    if before:
        vocoder.record["initialised_from"] = before  # the exported vocoder this run continued
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
        "--init-generator",
        help="start the generator from an exported vocoder folder (e.g. sqcodec/pretrained/default) "
        "instead of at random; the discriminators and optimisers start fresh",
    )
    ap.add_argument(
        "--codec",
        help="fine-tune on this codec's decoded features (a codec folder or checkpoint) instead of the "
        "ground-truth features; the target stays the real audio",
    )
    ap.add_argument(
        "--codec-layers",
        default="1,2,4,8",
        help="with --codec: the layer counts to decode, one drawn per crop (0 = ground-truth features)",
    )
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
