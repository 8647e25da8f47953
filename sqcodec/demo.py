"""The Quick-start demo: encode a file with the embedded default codec, decode it with 1, 2, 4 and 8
layers through the shipped HiFi-GAN vocoder, and report the bitrate, file size and log-mel RMSE of
each choice.

With no input it codes a speech-like clip it synthesises itself (:mod:`sqcodec.democlip`), so it needs
no download and no shared data. Everything goes through the same library calls as ``sqcodec encode`` /
``sqcodec decode``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

DEMO_LAYERS = (1, 2, 4, 8)


def run_demo(wav: Path | None, out: Path, layers: tuple[int, ...] = DEMO_LAYERS) -> dict:
    from sqcodec.audio import load_mono, mel_features, write_audio
    from sqcodec.bitstream import read_codes
    from sqcodec.codec import load_codec
    from sqcodec.democlip import make_clip

    codec = load_codec(None)
    sr = codec.sample_rate
    out.mkdir(parents=True, exist_ok=True)
    if wav is None:
        wav = out / "input.wav"
        write_audio(wav, make_clip(sr, 0), sr)
        print(f"no input given: made the clip {wav}")
    codes_path = out / "input.codes"
    codec.encode_file(wav, codes_path)
    ref, _ = load_mono(wav, sr)
    ref_mel = mel_features(ref, codec.preset)
    cf = read_codes(codes_path)
    vocoder = "HiFi-GAN" if codec.vocoder is not None else "Griffin-Lim"
    print(
        f"model {codec.model_id}: {cf.layers} layers of {cf.codebook_sizes[0]} codes at {cf.latent_rate:g}/s"
    )
    print(f"{wav} -> {codes_path} ({codes_path.stat().st_size} bytes for {cf.duration:.2f} s)")
    rows = []
    for n in [n for n in layers if n <= cf.layers]:
        dst = out / f"decoded_{n}layers.wav"
        codec.decode_file(codes_path, dst, layers=n)
        dec, _ = load_mono(dst, sr)
        dec_mel = mel_features(dec, codec.preset)
        t = min(ref_mel.shape[-1], dec_mel.shape[-1])
        rmse = float(((dec_mel[..., :t] - ref_mel[..., :t]) ** 2).mean().sqrt())
        rows.append({"layers": n, "kbps": cf.bits_per_second(n) / 1000, "logmel_rmse": rmse, "wav": str(dst)})
    print(f"layers  kbit/s  log-mel RMSE   ({vocoder} vocoder)")
    for r in rows:
        print(f"{r['layers']:>6}  {r['kbps']:6.3f}  {r['logmel_rmse']:.4f}   {r['wav']}")
    summary = {
        "input": str(wav),
        "codes": str(codes_path),
        "model": codec.model_id,
        "vocoder": vocoder,
        "layers": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if not all(math.isfinite(r["logmel_rmse"]) for r in rows) or not np.isfinite(ref).all():
        raise RuntimeError("the demo produced non-finite output")
    return summary
