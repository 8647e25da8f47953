"""Experiment reports: log-mel spectrogram comparisons (reference vs each system) and a one-page markdown
report that recipe stage 6 writes beside its scores (``exp/<tag>/scores/report.md``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..audio import load_mono, mel_features
from ..audio.features import get_preset

__all__ = ["spectrogram_comparison", "write_experiment_report"]


def spectrogram_comparison(
    reference: str | os.PathLike,
    systems: Mapping[str, str | os.PathLike],
    out_png: str | os.PathLike,
    preset: str = "codec16k",
    max_seconds: float = 8.0,
) -> Path:
    """One PNG: the preset's log-mel spectrogram of ``reference`` on top, then one panel per system,
    on a shared colour scale (the reference's range), first ``max_seconds`` only. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..train.checkpoint import atomic_write

    p = get_preset(preset)
    panels = [("reference", Path(reference))] + [(k, Path(v)) for k, v in systems.items()]
    n = int(max_seconds * p.sample_rate)
    mels = []
    for _, path in panels:
        wave, _ = load_mono(path, p.sample_rate)
        mels.append(mel_features(wave[:n], p).numpy())
    lo, hi = float(np.percentile(mels[0], 1)), float(mels[0].max())
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.7 * len(panels)), sharex=True, squeeze=False)
    seconds = p.hop_length / p.sample_rate
    for ax, (name, _), mel in zip(axes[:, 0], panels, mels, strict=True):
        ax.imshow(
            mel,
            origin="lower",
            aspect="auto",
            vmin=lo,
            vmax=hi,
            cmap="magma",
            extent=(0, mel.shape[1] * seconds, 0, mel.shape[0]),
        )
        ax.set_ylabel("mel bin")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)
    return out


def write_experiment_report(
    exp_dir: str | os.PathLike,
    scores_dir: str | os.PathLike,
    sets: Sequence[str],
    decode_dirs: Mapping[str, Sequence[tuple[str, Path]]],
    preset: str = "codec16k",
    examples: int = 2,
) -> list[Path]:
    """``scores_dir/report.md``: the stage-6 summary table plus, per set, spectrogram comparisons of the
    first ``examples`` utterances (``scores_dir/spectrograms/<set>_<utt>.png``). ``decode_dirs[set]``:
    ``(name, folder)`` pairs whose ``wav/`` hold the systems; the reference is ``decode_<set>_ref/wav``."""
    from ..train.checkpoint import atomic_write_text

    exp_dir, scores_dir = Path(exp_dir), Path(scores_dir)
    written: list[Path] = []
    summary = scores_dir / "summary.md"
    lines = [f"# Experiment report: {exp_dir.name}", "", f"Experiment folder: `{exp_dir}`.", ""]
    if summary.is_file():
        lines += ["## Scores", "", summary.read_text(encoding="utf-8").strip(), ""]
    for s in sets:
        ref_dir = exp_dir / f"decode_{s}_ref" / "wav"
        utts = sorted(ref_dir.glob("*.wav"))[:examples]
        if not utts:
            continue
        lines += [f"## Spectrograms: {s}", ""]
        for ref in utts:
            systems = {
                name: d / "wav" / ref.name
                for name, d in decode_dirs.get(s, [])
                if (d / "wav" / ref.name).is_file()
            }
            png = spectrogram_comparison(
                ref, systems, scores_dir / "spectrograms" / f"{s}_{ref.stem}.png", preset
            )
            written.append(png)
            lines += [f"### {ref.stem}", "", f"![{s} {ref.stem}](spectrograms/{png.name})", ""]
    atomic_write_text(scores_dir / "report.md", "\n".join(lines) + "\n")
    return [*written, scores_dir / "report.md"]
