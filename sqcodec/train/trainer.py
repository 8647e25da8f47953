"""The training loop: Adam + the papers' LR schedules, clipping, AMP, DDP, telemetry, validation, checkpoints.

One optimisation step ``s`` (0-based) is: ``model.set_step(s)`` (Gumbel temperature tau(s)), the batch of
step ``s`` from the deterministic stream (:mod:`.data`), forward under autocast (bf16 / fp16 on CUDA,
fp32 on CPU), backward (GradScaler for fp16), gradient-norm clipping, optimiser step, per-iteration
schedule step. After it ``step = s + 1`` steps are complete; telemetry records, validation, ``best.pt``
and periodic checkpoints are labelled with that count. A step whose gradient norm is not finite is
skipped (``train.max_nonfinite`` in a row abort the run).

Exact resume: checkpoints hold the model, optimiser, schedule, GradScaler, step, best validation loss,
and every rank's RNG states; the data of step ``s`` is a function of (seed, s). A CPU run killed and
resumed from its last checkpoint therefore logs bit-identical losses to an uninterrupted run.
A resume whose config changes ``optim.lr`` or ``schedule`` (say, to decay a converging run) restarts
the schedule at the checkpoint's step with the new lr (:meth:`.Schedule.restart_at`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt_mod
from .config import ConfigError, diff_configs, load_config, save_config
from .data import DataBundle, build_data
from .distributed import DistInfo, all_gather_object, any_flag, barrier, init_distributed, unwrap, wrap_model
from .schedules import Schedule, build_optimizer
from .telemetry import TelemetryLogger, plot_telemetry

log = logging.getLogger("sqcodec.train")


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _fill_auto_speakers(model_cfg: dict, n_speakers: int) -> dict:
    """Replace ``n_speakers: auto`` (anywhere in the model config) by the data's speaker count."""
    out: dict = {}
    for k, v in model_cfg.items():
        if isinstance(v, dict):
            out[k] = _fill_auto_speakers(v, n_speakers)
        elif k == "n_speakers" and v == "auto":
            out[k] = int(n_speakers)
        else:
            out[k] = v
    return out


def _temperature_of(model: nn.Module) -> float | None:
    t = getattr(model, "temperature", None)
    if t is None:
        q = getattr(model, "quantizer", None)
        t = getattr(q, "temperature", None) if q is not None else None
    if isinstance(t, torch.Tensor) and t.numel() == 1:
        return float(t)
    if isinstance(t, (int, float)):
        return float(t)
    return None


class Trainer:
    """Builds everything from a resolved config and runs :meth:`fit`.

    ``resume``: False (fresh run; an existing exp dir's log is overwritten), True (the newest loadable
    checkpoint in ``exp_dir/checkpoints``; a fresh start if there is none), or a checkpoint path.
    ``model_builder``: ``cfg["model"] -> nn.Module`` (default :func:`sqcodec.model.build_model`); the
    module's ``forward(batch)`` returns an object with ``loss`` and optional ``terms`` / ``stats``.
    """

    def __init__(
        self,
        cfg: dict,
        exp_dir: str | Path,
        *,
        resume: bool | str | Path = False,
        model_builder=None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.cfg = cfg
        self.exp_dir = Path(exp_dir)
        t = cfg["train"]
        self.dist = dist_info or init_distributed(t["device"])
        self.device = self.dist.device
        self.is_main = self.dist.is_main
        if self.is_main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            ckpt_mod.clean_temp_files(self.exp_dir)
            ckpt_mod.clean_temp_files(self.exp_dir / ckpt_mod.CKPT_DIR)
        barrier(self.dist)
        self._log_handler = self._setup_file_log() if self.is_main else None

        # ---- checkpoint to resume from
        ckpt = None
        if resume:
            path = ckpt_mod.find_latest(self.exp_dir) if resume is True else Path(resume)
            if path is None:
                log.warning("--resume: no checkpoint in %s, starting from step 0", self.exp_dir)
            else:
                ckpt = ckpt_mod.load_checkpoint(path)
                self._check_resume_config(ckpt, path)
                log.info("resuming from %s (step %d)", path, ckpt["step"])
        elif ckpt_mod.list_checkpoints(self.exp_dir):
            last = ckpt_mod.list_checkpoints(self.exp_dir)[-1][0]
            raise ConfigError(
                f"{self.exp_dir} already holds checkpoints (up to step {last}): pass --resume to continue "
                "that run, or use another experiment directory"
            )
        self.resumed_from = int(ckpt["step"]) if ckpt is not None else None
        self._commit = _git_commit() if self.is_main else None

        # ---- determinism
        self.seed = int(t["seed"])
        if self.seed < 0:
            raise ConfigError("train.seed must be >= 0")
        seed_everything(self.seed)
        if t["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
            if self.device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.backends.cudnn.benchmark = False

        # ---- data
        self.data: DataBundle = build_data(
            cfg["data"],
            seed=self.seed,
            batch_size=int(t["batch_size"]),
            exp_dir=self.exp_dir,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            barrier=lambda: barrier(self.dist),
            with_valid=int(t["val_every"]) > 0,
            reuse_saved=ckpt is not None,
        )
        log.info(
            "data: %d training utterances (%d dropped as shorter than the crop), %d validation, %d speakers",
            len(self.data.train.index),
            self.data.dropped,
            len(self.data.valid) if self.data.valid else 0,
            self.data.n_speakers,
        )

        # ---- model (same init on every rank; DDP broadcasts rank 0's anyway)
        self.model_cfg = _fill_auto_speakers(cfg["model"], self.data.n_speakers)
        self.cfg = {**cfg, "model": self.model_cfg}
        if model_builder is None:
            from sqcodec.model import build_model as model_builder
        torch.manual_seed(self.seed)
        model = model_builder(self.model_cfg)
        self._check_speakers(model)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
        model.to(self.device)
        self.model = wrap_model(model, self.dist, t["sync_batchnorm"]) if self.dist.enabled else model
        if isinstance(self.model, nn.parallel.DistributedDataParallel):
            self.model.find_unused_parameters = bool(t["find_unused_parameters"])
        self.module = unwrap(self.model)

        # ---- optimisation
        self.optimizer = build_optimizer(self.module.parameters(), cfg["optim"])
        self.schedule = Schedule(self.optimizer, cfg["schedule"])
        self.amp_dtype = self._amp_dtype(t["amp"])
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self.grad_clip = float(t["grad_clip"] or 0.0)
        self.step = 0
        self.best_val = math.inf
        self.best_step = -1
        self.elapsed = 0.0
        self._nonfinite = 0
        self._stop = False

        if ckpt is not None:
            self._restore(ckpt)

        if self.is_main:
            save_config(self.cfg, self.exp_dir / "config.yaml")
        self.logger = TelemetryLogger(
            self.exp_dir,
            enabled=self.is_main,
            resume_step=self.step if ckpt is not None else None,
            tensorboard=bool(t["tensorboard"]),
        )
        self._prefetcher = _Prefetcher(self.data.train, pin=self.device.type == "cuda")

        # RNG streams last, so nothing above can shift them: the checkpoint's states on resume; else
        # per-rank noise streams (Gumbel samples, jitter) with rank 0 continuing the seeded stream
        if ckpt is not None:
            self._restore_rng(ckpt)
        elif self.dist.rank > 0:
            seed_everything(self.seed + 1_000_003 * self.dist.rank)

    # ------------------------------------------------------------------ setup helpers
    def _setup_file_log(self) -> logging.Handler:
        handler = logging.FileHandler(self.exp_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
        log.addHandler(handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)  # the file gets INFO; stderr handlers keep their own levels
        return handler

    def _check_resume_config(self, ckpt: dict, path: Path) -> None:
        old = ckpt.get("config") or {}
        if not old:
            return
        model_diff = diff_configs(old.get("model", {}), self.cfg.get("model", {}))
        # n_speakers: auto is resolved when the model is built
        model_diff = [k for k in model_diff if not k.endswith("n_speakers")]
        if model_diff:
            raise ConfigError(f"{path}: the model config differs from the checkpoint's: {model_diff}")
        other = [k for k in diff_configs(old, self.cfg) if not k.startswith("model.")]
        if other:
            log.warning("resuming with config changes: %s", ", ".join(other))

    def _check_speakers(self, model: nn.Module) -> None:
        n = self.data.n_speakers
        dec = getattr(model, "decoder", None)
        have = getattr(dec, "n_speakers", None)
        if n and isinstance(have, int) and have > 0 and have < n:
            raise ConfigError(
                f"the data has {n} speakers but the decoder's embedding has {have}: set "
                "model.decoder.n_speakers to auto (or >= the speaker count)"
            )

    def _amp_dtype(self, amp: Any) -> torch.dtype | None:
        if self.device.type != "cuda" or amp in (None, False, "none"):
            return None
        if amp == "bf16":
            if not torch.cuda.is_bf16_supported():
                log.warning("bf16 autocast unsupported on this GPU; using fp16 with GradScaler")
                return torch.float16
            return torch.bfloat16
        return torch.float16

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ state
    def state_dict(self, rng_all: list | None = None) -> dict:
        d = self.data
        return {
            "step": self.step,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "best_val": float(self.best_val),
            "best_step": int(self.best_step),
            "elapsed": float(self.elapsed),
            "rng": rng_all if rng_all is not None else [ckpt_mod.get_rng_state()],
            "data": {
                "seed": self.seed,
                "global_batch": d.train.global_batch,
                "n_train": len(d.train.index),
                "world_size": self.dist.world_size,
            },
            "config": self.cfg,
            "speakers": d.speaker_map or {},
            "provenance": {
                "commit": self._commit,
                "torch": str(torch.__version__),
                "numpy": str(np.__version__),
                "python": platform.python_version(),
                "sqcodec": _sqcodec_version(),
                "seed": self.seed,
                "train_utterances": len(d.train_uids),
                "train_list_sha1": _sha1_lines(d.train_uids),
                "valid_list_sha1": _sha1_lines(d.valid.uids) if d.valid else None,
                "data_train": str(self.cfg["data"]["train"]),
                "data_valid": str(self.cfg["data"]["valid"]),
            },
        }

    def _restore(self, ckpt: dict) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        old = ckpt.get("config") or {}
        lr = float(self.cfg["optim"]["lr"])
        old_lr = (old.get("optim") or {}).get("lr")
        changed = old.get("schedule") not in (None, self.cfg["schedule"]) or (
            old_lr is not None and float(old_lr) != lr
        )
        if changed:  # the user asked for another lr or schedule from here on: honour it
            self.schedule.restart_at(int(ckpt["step"]), lr)
            log.warning(
                "optim.lr / schedule changed on resume: '%s' schedule restarted at step %d, lr now %.3g",
                self.schedule.name,
                int(ckpt["step"]),
                self.schedule.lr,
            )
        else:
            self.schedule.load_state_dict(ckpt["scheduler"])
        if self.scaler.is_enabled() and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.best_val = float(ckpt.get("best_val", math.inf))
        self.best_step = int(ckpt.get("best_step", -1))
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        data = ckpt.get("data") or {}
        if data.get("global_batch") not in (None, self.data.train.global_batch):
            log.warning(
                "global batch changed (%s -> %d): the data order after step %d differs from the original run",
                data.get("global_batch"),
                self.data.train.global_batch,
                self.step,
            )
        if data.get("n_train") not in (None, len(self.data.train.index)):
            log.warning(
                "the number of training utterances changed (%s -> %d)",
                data["n_train"],
                len(self.data.train.index),
            )

    def _restore_rng(self, ckpt: dict) -> None:
        rng = ckpt.get("rng") or []
        if len(rng) == self.dist.world_size:
            ckpt_mod.set_rng_state(rng[self.dist.rank])
        else:
            log.warning(
                "checkpoint has RNG states of %d ranks, this run has %d: reseeding",
                len(rng),
                self.dist.world_size,
            )
            seed_everything(self.seed + 7_919 * self.step + 1_000_003 * self.dist.rank)

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step_XXXXXXXX.pt`` (rank 0) and prune old ones; all ranks take part."""
        rng_all = all_gather_object(ckpt_mod.get_rng_state(), self.dist)
        path = None
        if self.is_main:
            path = ckpt_mod.checkpoint_path(self.exp_dir, self.step)
            ckpt_mod.save_checkpoint(self.state_dict(rng_all), path)
            ckpt_mod.prune_checkpoints(self.exp_dir, int(self.cfg["train"]["keep_last"]))
            self.logger.flush()
        barrier(self.dist)
        return path

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict | None:
        """Deterministic validation loss (model.eval()); every rank runs the whole set (the model's
        collectives, e.g. the pooled σ̂², need all ranks in step), rank 0 logs it."""
        valid = self.data.valid
        if valid is None:
            return None
        model = self.module
        was_training = model.training
        model.eval()
        tot_n = 0
        loss_sum = 0.0
        terms_sum: dict[str, float] = {}
        stats_sum: dict[str, float] = {}
        try:
            for batch in valid.batches:
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                with self._autocast():
                    out = model(batch)
                b = int(batch["x"].shape[0])
                tot_n += b
                loss_sum += float(out.loss) * b
                for k, v in (getattr(out, "terms", None) or {}).items():
                    terms_sum[k] = terms_sum.get(k, 0.0) + float(v) * b
                for k, v in (getattr(out, "stats", None) or {}).items():
                    stats_sum[k] = stats_sum.get(k, 0.0) + float(v) * b
        finally:
            model.train(was_training)
        loss = loss_sum / tot_n
        rec = {
            "split": "valid",
            "step": self.step,
            "loss": loss,
            "terms": {k: v / tot_n for k, v in terms_sum.items()},
            "stats": {k: v / tot_n for k, v in stats_sum.items()},
            "n": tot_n,
        }
        improved = math.isfinite(loss) and loss < self.best_val
        if improved:
            self.best_val, self.best_step = loss, self.step
        rec["best"] = improved
        self.schedule.after_validation(loss)
        self.logger.log(rec)
        log.info("step %d valid loss %.5g%s", self.step, loss, " (best)" if improved else "")
        if improved:
            rng_all = all_gather_object(ckpt_mod.get_rng_state(), self.dist)
            if self.is_main:
                ckpt_mod.save_checkpoint(self.state_dict(rng_all), self.exp_dir / ckpt_mod.BEST)
            barrier(self.dist)
        return rec

    # ------------------------------------------------------------------ training
    def _request_stop(self, signum, frame) -> None:  # noqa: ARG002
        if self._stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("signal %d: stopping after this step (a checkpoint will be written)", signum)
        self._stop = True

    def _install_signals(self) -> dict:
        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    old[sig] = signal.signal(sig, self._request_stop)
                except (ValueError, OSError):
                    pass
        return old

    def train_step(self, step: int) -> dict:
        """One optimisation step on the batch of ``step``; returns the telemetry record."""
        model = self.model
        model.train()
        tau = self.module.set_step(step) if hasattr(self.module, "set_step") else None
        batch = {k: v.to(self.device, non_blocking=True) for k, v in self._prefetcher.get(step).items()}
        with self._autocast():
            out = model(batch)
        loss = out.loss
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        params = [p for p in self.module.parameters() if p.grad is not None]
        max_norm = self.grad_clip if self.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.tensor(0.0)
        gn = float(grad_norm)
        finite = math.isfinite(gn)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the update itself on inf/nan gradients
            self.scaler.update()
        elif finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.after_step()
        if finite or self.scaler.is_enabled():
            self._nonfinite = 0
        else:
            self._nonfinite += 1
            log.warning(
                "step %d: non-finite gradient norm, update skipped (%d in a row)", step, self._nonfinite
            )
            if self._nonfinite > int(self.cfg["train"]["max_nonfinite"]):
                raise FloatingPointError(
                    f"{self._nonfinite} consecutive non-finite steps at step {step}: training diverged"
                )
        return {
            "out": out,
            "loss": loss.detach(),
            "grad_norm": gn,
            "temperature": float(tau) if isinstance(tau, (int, float)) else _temperature_of(self.module),
        }

    def _train_record(self, res: dict, lr: float) -> dict:
        out = res["out"]
        terms = {k: v.detach().float() for k, v in (getattr(out, "terms", None) or {}).items()}
        values = (
            torch.stack([res["loss"].float(), *terms.values()]) if terms else res["loss"].float().reshape(1)
        )
        if self.dist.enabled and torch.distributed.is_initialized():
            torch.distributed.all_reduce(values)
            values = values / self.dist.world_size
        vals = values.tolist()
        stats = {k: float(v) for k, v in (getattr(out, "stats", None) or {}).items()}
        return {
            "split": "train",
            "step": self.step,
            "loss": vals[0],
            "terms": dict(zip(terms.keys(), vals[1:], strict=True)),
            "stats": stats,
            "lr": lr,
            "temperature": res["temperature"],
            "grad_norm": res["grad_norm"],
            "time": self.elapsed,
        }

    def fit(self, max_steps: int | None = None) -> Path:
        """Train to ``train.steps`` (or stop after ``max_steps`` completed steps, writing a checkpoint).
        Returns the experiment directory."""
        t = self.cfg["train"]
        total = int(t["steps"])
        stop_at = min(total, int(max_steps)) if max_steps is not None else total
        log_every, val_every, ckpt_every = int(t["log_every"]), int(t["val_every"]), int(t["ckpt_every"])
        old_handlers = self._install_signals()
        t_start = time.perf_counter() - self.elapsed
        try:
            if self.step >= stop_at:
                log.info("nothing to do: step %d >= %d", self.step, stop_at)
            while self.step < stop_at:
                lr = self.schedule.lr
                res = self.train_step(self.step)
                self.step += 1
                self.elapsed = time.perf_counter() - t_start
                if self.step % log_every == 0 or self.step == stop_at:
                    rec = self._train_record(res, lr)
                    self.logger.log(rec)
                    if self.is_main and (self.step % (log_every * 10) == 0 or self.step == stop_at):
                        log.info(
                            "step %d loss %.5g lr %.3g tau %s grad %.3g",
                            self.step,
                            rec["loss"],
                            lr,
                            rec["temperature"],
                            rec["grad_norm"],
                        )
                if val_every and (self.step % val_every == 0 or self.step == total):
                    self.validate()
                stop = self._stop
                if self.dist.enabled and (self.step % log_every == 0 or self.step == stop_at):
                    stop = any_flag(stop, self.dist)
                elif self.dist.enabled:
                    stop = False  # ranks agree on stopping only at log steps
                if self.step % ckpt_every == 0 or self.step == stop_at or stop:
                    self.save_checkpoint()
                if stop:
                    log.warning("stopped at step %d on request", self.step)
                    break
            if self.is_main and self.step >= total and t.get("plot", True):
                try:
                    plot_telemetry(self.logger.path, self.exp_dir / "telemetry.png")
                except Exception as e:  # a plot must never fail a finished run
                    log.warning("telemetry plot failed: %s", e)
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            self.logger.flush()
        return self.exp_dir

    def close(self) -> None:
        self._prefetcher.close()
        self.logger.close()
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None


class _Prefetcher:
    """Builds the batch of step ``s + 1`` in a background thread while step ``s`` runs. Batches are pure
    functions of the step (:class:`~sqcodec.train.data.TrainStream`), so this changes no result."""

    def __init__(self, stream, pin: bool = False) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.stream = stream
        self.pin = pin
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqcodec-data")
        self.pending: tuple[int, Any] | None = None

    def _make(self, step: int) -> dict:
        batch = self.stream.batch(step)
        return {k: v.pin_memory() for k, v in batch.items()} if self.pin else batch

    def get(self, step: int) -> dict:
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()
        else:
            if self.pending is not None:  # out of order (e.g. a direct train_step call): let it finish
                self.pending[1].exception()
            batch = self._make(step)
        self.pending = (step + 1, self.pool.submit(self._make, step + 1))
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pending = None


def _sqcodec_version() -> str:
    try:
        from sqcodec import __version__

        return __version__
    except Exception:
        return "unknown"


def _sha1_lines(lines: list[str]) -> str:
    import hashlib

    return hashlib.sha1("".join(f"{x}\n" for x in lines).encode()).hexdigest()


def _inside(filename: object, folder: Path) -> bool:
    """Whether an ``OSError``'s file is the experiment folder, inside it, or a file above it (ENOTDIR)."""
    try:
        f, d = Path(os.fsdecode(filename)).absolute(), Path(folder).absolute()  # type: ignore[arg-type]
    except TypeError:
        return False
    return f == d or f.is_relative_to(d) or d.is_relative_to(f)


def default_exp_dir(cfg: dict, config_path: Path) -> Path:
    if cfg["train"].get("exp_dir"):
        return Path(cfg["train"]["exp_dir"])
    return Path("exp") / config_path.stem


def train(
    config_path: str | Path,
    *,
    resume: bool | str = False,
    overrides: list[str] | None = None,
    out_dir: Path | None = None,
    model_builder=None,
) -> Path:
    """Train from a YAML config (with ``section.key=value`` overrides) into ``out_dir`` (default
    ``train.exp_dir`` or ``exp/<config stem>``); ``resume`` True picks the newest checkpoint there, a
    string names one. Works as a plain process or under ``torchrun``. Returns the experiment dir."""
    config_path = Path(config_path)
    cfg = load_config(config_path, overrides)
    exp_dir = Path(out_dir) if out_dir is not None else default_exp_dir(cfg, config_path)
    info = init_distributed(cfg["train"]["device"])
    owns_group = info.enabled
    trainer = None
    try:
        trainer = Trainer(cfg, exp_dir, resume=resume, model_builder=model_builder, dist_info=info)
        trainer.fit()
    except OSError as err:
        # the experiment folder cannot be written (no permission, disk full, a file in the way): one line
        # naming the file instead of a traceback; errors about other files (inputs) pass unchanged
        if err.filename is None or _inside(err.filename, exp_dir):
            raise ckpt_mod.output_error(err, exp_dir) from None
        raise
    finally:
        if trainer is not None:
            trainer.close()
        if owns_group:
            from .distributed import cleanup

            cleanup()
    return exp_dir
