"""The Quick-start demo: train a tiny RSQ-VAE on one clip, then code it with 1..L residual layers.

Until the embedded default codec ships, this is the main job that runs from a fresh clone with no
download: it featurises the clip (``codec16k`` log-mel), trains ``configs/tiny.yaml`` on it with the
real trainer, encodes deterministic codes, decodes them with every layer count, and reports the bitrate
and log-mel RMSE of each choice. Audio is rendered with the Griffin-Lim fallback vocoder.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch

CONFIG = Path(__file__).with_name("configs") / "tiny.yaml"


def run_demo(wav: Path | None, out: Path, steps: int = 300, seed: int = 0) -> dict:
    from sqcodec.audio import PRESETS, load_mono, wave_to_features, write_audio
    from sqcodec.democlip import make_clip
    from sqcodec.train import train
    from sqcodec.train.checkpoint import find_latest, load_model
    from sqcodec.vocoder.griffinlim import griffin_lim

    preset = PRESETS["codec16k"]
    out.mkdir(parents=True, exist_ok=True)
    clip = out / "input.wav"
    if wav is None:
        wave = make_clip(preset.sample_rate, seed)
        write_audio(clip, wave, preset.sample_rate)
        print(f"no input given: made a {clip} clip")
    else:
        wave, _ = load_mono(wav, preset.sample_rate)
        write_audio(clip, wave, preset.sample_rate)
    n_samples = len(wave)
    # the demo's training folder is its own scratch space: each run trains afresh
    shutil.rmtree(out / "exp", ignore_errors=True)
    exp = train(
        CONFIG,
        overrides=[
            f"data.train={clip}",
            f"data.valid={clip}",
            "data.valid_holdout=0",
            f"train.steps={steps}",
            f"train.seed={seed}",
            "train.tensorboard=false",
        ],
        out_dir=out / "exp",
    )
    model, _ = load_model(find_latest(exp))
    x = torch.from_numpy(wave_to_features(clip, preset)).float()[None]
    with torch.no_grad():
        codes = model.encode(x)
        decoded = [model.decode(codes[:, :n], length=x.shape[-1]) for n in range(1, codes.shape[1] + 1)]
    latent_rate = preset.frame_rate / 2  # the codec nets halve the frame rate
    rows = []
    for layers, y in enumerate(decoded, start=1):
        rmse = float(torch.sqrt(((y - x) ** 2).mean()))
        kbps = latent_rate * model.quantizer.bits_per_position(layers) / 1000
        audio = griffin_lim(y[0], preset.name, length=n_samples)
        write_audio(out / f"decoded_{layers}layers.wav", audio, preset.sample_rate)
        rows.append({"layers": layers, "kbps": round(kbps, 3), "logmel_rmse": round(rmse, 4)})
    np.save(out / "codes.npy", codes.numpy().astype(np.int16))
    write_audio(
        out / "input_griffinlim.wav", griffin_lim(x[0], preset.name, length=n_samples), preset.sample_rate
    )
    summary = {"input": str(clip), "codes_shape": list(codes.shape), "layers": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"codes: {tuple(codes.shape)} (batch, layers, latent frames) -> {out / 'codes.npy'}")
    print("layers  kbps   log-mel RMSE")
    for r in rows:
        print(f"{r['layers']:>6}  {r['kbps']:.3f}  {r['logmel_rmse']:.4f}")
    print(f"decoded audio (Griffin-Lim): {out}/decoded_*layers.wav")
    assert all(math.isfinite(r["logmel_rmse"]) for r in rows)
    return summary
