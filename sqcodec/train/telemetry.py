"""Training telemetry: TensorBoard scalars plus a JSON-lines log, and a one-page PNG of the self-annealing.

Each logged training step is one JSON object in ``<exp>/train.jsonl``::

    {"split": "train", "step": 100, "loss": ..., "terms": {...}, "stats": {"var_l1": s_1^2,
     "entropy_l1": mean entropy of P-hat (nats), "perplexity_l1": ..., "sigma2": ..., "mse": ...},
     "lr": ..., "temperature": ..., "grad_norm": ..., "time": seconds since the run started}

and each validation one object with ``"split": "valid"`` (loss, terms, stats, ``best``). On resume the log
is cut back to the checkpoint's step so a resumed run's log equals an uninterrupted one's.
:func:`plot_telemetry` draws per-layer s_l^2 (log scale), mean entropy, perplexity, training loss and
validation loss against the step (SQ-VAE Fig. 2 / HQ-VAE Fig. 4 style).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

JSONL = "train.jsonl"
TB_DIR = "tb"


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


def _clean(d: dict | None) -> dict[str, float | None]:
    out = {}
    for k, v in (d or {}).items():
        f = _num(v)
        out[str(k)] = f if f is None or math.isfinite(f) else None
    return out


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a telemetry file (a torn last line from a killed run is ignored)."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class TelemetryLogger:
    """Writes JSONL and TensorBoard records (only on the main process: pass ``enabled=False`` elsewhere)."""

    def __init__(
        self,
        exp_dir: str | Path,
        *,
        enabled: bool = True,
        resume_step: int | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.exp_dir = Path(exp_dir)
        self.enabled = enabled
        self.path = self.exp_dir / JSONL
        self._tb = None
        self._fh = None
        if not enabled:
            return
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate(resume_step)
        elif self.path.exists():
            self.path.unlink()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(
                    log_dir=str(self.exp_dir / TB_DIR),
                    purge_step=(resume_step + 1) if resume_step is not None else None,
                )
            except Exception:  # tensorboard missing or broken: the JSONL log is enough
                self._tb = None

    def _truncate(self, step: int) -> None:
        """Keep records up to ``step`` (those after the checkpoint are replayed by the resumed run)."""
        from .checkpoint import atomic_write_text

        keep = [r for r in read_jsonl(self.path) if int(r.get("step", 0)) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        rec = dict(record)
        for key in ("terms", "stats"):
            if key in rec:
                rec[key] = _clean(rec[key])
        for key in ("loss", "lr", "temperature", "grad_norm", "time"):
            if key in rec and rec[key] is not None:
                f = _num(rec[key])
                rec[key] = f if f is not None and math.isfinite(f) else None
        assert self._fh is not None
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()
        if self._tb is not None:
            split = rec.get("split", "train")
            step = int(rec["step"])
            for key in ("loss", "lr", "temperature", "grad_norm"):
                if rec.get(key) is not None:
                    self._tb.add_scalar(f"{split}/{key}", rec[key], step)
            for group in ("terms", "stats"):
                for k, v in rec.get(group, {}).items():
                    if v is not None:
                        self._tb.add_scalar(f"{split}/{group}/{k}", v, step)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


_LAYER = re.compile(r"^(var|entropy|perplexity)_l(\d+)$")


def plot_telemetry(jsonl_path: str | Path, png_path: str | Path) -> Path:
    """Plot per-layer s_l^2 (log), mean entropy, perplexity, training and validation loss vs step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_jsonl(jsonl_path)
    if not recs:
        raise ValueError(f"{jsonl_path}: no telemetry records")
    train = [r for r in recs if r.get("split", "train") == "train"]
    valid = [r for r in recs if r.get("split") == "valid"]
    series: dict[str, dict[int, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in train:
        for k, v in (r.get("stats") or {}).items():
            m = _LAYER.match(k)
            if m and v is not None:
                series[m.group(1)][int(m.group(2))].append((r["step"], v))

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = [
        ("var", "variance $s_l^2$", True),
        ("entropy", "mean entropy of $\\hat P$ (nats)", False),
        ("perplexity", "codebook perplexity", False),
    ]
    for ax, (key, title, logy) in zip(axes[0], panels, strict=True):
        for layer in sorted(series[key]):
            pts = series[key][layer]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"layer {layer}", lw=1)
        if logy and any(v > 0 for pts in series[key].values() for _, v in pts):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        if series[key]:
            ax.legend(fontsize=7, ncol=2)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)

    ax = axes[1][0]
    pts = [(r["step"], r["loss"]) for r in train if r.get("loss") is not None]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1, color="C0", label="train")
    ax.set_title("training loss")
    ax.set_xlabel("step")

    ax = axes[1][1]
    vpts = [(r["step"], r["loss"]) for r in valid if r.get("loss") is not None]
    if vpts:
        ax.plot([p[0] for p in vpts], [p[1] for p in vpts], "o-", color="C1", label="valid")
    else:
        ax.text(0.5, 0.5, "no validation", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("validation loss")
    ax.set_xlabel("step")

    ax = axes[1][2]
    for key, label in (("sigma2", "$\\hat\\sigma^2$ (train)"), ("mse", "mse (train)")):
        p2 = [(r["step"], r["stats"][key]) for r in train if (r.get("stats") or {}).get(key) is not None]
        if p2:
            ax.plot([p[0] for p in p2], [p[1] for p in p2], lw=1, label=label)
    lr = [(r["step"], r["lr"]) for r in train if r.get("lr") is not None]
    if ax.lines:
        if all(line.get_ydata().min() > 0 for line in ax.lines):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_title("reconstruction")
    ax.set_xlabel("step")
    if lr:
        ax2 = ax.twinx()
        ax2.plot([p[0] for p in lr], [p[1] for p in lr], color="gray", lw=0.8, ls="--")
        ax2.set_ylabel("lr", color="gray")

    fig.suptitle(str(Path(jsonl_path).parent.name))
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
