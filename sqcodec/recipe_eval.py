"""Stages 5-6 of ``recipes/codec.sh``: decode a set with a trained model + a vocoder, and score the result.

Decoding (:func:`decode_set`, ``python -m sqcodec.recipe_tools decode``) reads the set's features
(``dump/<set>/<raw|norm>/feats.scp``, the ones the model was trained on) and, for every utterance, writes
into the experiment folder ``exp/<tag>/``:

* ``decode_<set>_L<n>/`` for each layer count ``n``: ``codes.ark/scp`` (int32 ``(n, *latent_shape)``,
  ``model.encode(x, n)``), ``feats.ark/scp`` (the decoded features, Kaldi ``(frames, n_mels)``, cropped to
  the input length and in the preset's raw domain: recipe standardisation undone with the train stats),
  ``wav/<utt>.wav`` (the vocoder on those features, at the preset rate, cropped or zero-padded to the
  reference length), ``info.json`` and ``log/``;
* ``decode_<set>_resyn/wav/`` the vocoder on the ground-truth raw features (the vocoder's own ceiling);
* ``decode_<set>_ref/wav/`` the reference audio (``data/<set>/wav.scp`` [+ ``segments``]) resampled to
  the preset rate (fixed-length presets: zero-padded/cropped to their length, as the front-end does).

With ``job`` set (the recipe's ``JOB``) tables are written as ``feats.<job>.scp`` etc. for the shell to
merge. Scoring (:func:`score_sets`, ``python -m sqcodec.recipe_tools score-decode``) compares every
decode folder's ``wav/`` with the references (:func:`sqcodec.eval.score.score_dirs`), the decoded features
with the ground-truth features (log-mel RMSE, unnormalised and standardised with the train stats; mel
MSE in dB²) and reports per-layer codebook perplexity and bits per second of the codes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .recipe_tools import RecipeError, read_table, write_text_atomic

__all__ = [
    "RecipeVocoder",
    "decode_set",
    "default_layer_counts",
    "find_model_checkpoint",
    "score_sets",
    "wave_metrics",
    "write_summary",
]

#: waveform metrics of stage 6 (``sqcodec.eval.score`` names); PESQ/STOI are dropped when not installed
WAVE_METRICS = ("log_mel_rmse", "mel_mse_db2", "stoi", "pesq_wb")
_OPTIONAL = {"pesq_wb": "pesq", "pesq_nb": "pesq", "stoi": "pystoi", "estoi": "pystoi"}
_DECODE_RE = re.compile(r"^decode_(?P<set>.+)_(?P<name>L(?P<n>\d+)|resyn)$")


# ------------------------------------------------------------------------------------------ model
def find_model_checkpoint(exp_dir: Path, ckpt: str | Path | None = None) -> Path:
    """``ckpt`` if given, else ``exp_dir/best.pt``, else the newest periodic checkpoint."""
    from .train.checkpoint import find_latest

    exp_dir = Path(exp_dir)
    if ckpt:
        if not Path(ckpt).is_file():
            raise RecipeError(f"{ckpt}: no such checkpoint")
        return Path(ckpt)
    if (exp_dir / "best.pt").is_file():
        return exp_dir / "best.pt"
    latest = find_latest(exp_dir)
    if latest is None:
        raise RecipeError(f"{exp_dir}: no best.pt and no checkpoint (run stage 3)")
    return latest


def default_layer_counts(num_layers: int) -> list[int]:
    """1, 2, 4, ... up to and including ``num_layers`` (e.g. 8 -> [1, 2, 4, 8], 6 -> [1, 2, 4, 6])."""
    out = []
    n = 1
    while n < num_layers:
        out.append(n)
        n *= 2
    return out + [int(num_layers)]


def parse_layers(spec: str | Sequence[int] | None, num_layers: int) -> list[int]:
    """``"1 2 4"`` (or ``1,2,4``) -> sorted layer counts in 1..num_layers; empty: the default counts."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return default_layer_counts(num_layers)
    items = spec.replace(",", " ").split() if isinstance(spec, str) else list(spec)
    try:
        counts = sorted({int(x) for x in items})
    except ValueError:
        raise RecipeError(f"--decode_layers {spec!r}: expected layer counts such as '1 2 4'") from None
    bad = [n for n in counts if not 1 <= n <= num_layers]
    if bad:
        raise RecipeError(f"--decode_layers {spec!r}: the model has {num_layers} layer(s); got {bad}")
    return counts


class _ModelIO:
    """Full-utterance input/output conventions of a trained :class:`~sqcodec.model.CodecModel`: the
    encoder's edge crop (speech: one frame each side), its time stride (inputs padded by repeating the
    last frame to a multiple of it, except for the codec encoder, which pads inside), the 2-D networks'
    channel axis and the trainer's own standardisation (``data.stats``)."""

    def __init__(self, model: Any, cfg: dict, exp_dir: Path) -> None:
        from .nets.codec import CodecEncoder

        data = cfg.get("data") or {}
        self.model = model
        self.channel_axis = bool(data.get("channel_axis"))
        self.crop = tuple(getattr(model.encoder, "crop", (0, 0)))
        self.multiple = (
            1 if isinstance(model.encoder, CodecEncoder) else int(getattr(model.encoder, "stride", 1))
        )
        self.stats = None
        spec = data.get("stats")
        if spec:
            from .train.data import load_stats

            self.stats = load_stats(exp_dir / "stats.json" if spec == "auto" else spec)

    def encode_decode(self, feat: np.ndarray, layers: int, speaker: int | None, device: Any):
        """``(n_mels, N)`` features -> (codes int32 ``(layers, *S)``, decoded ``(n_mels, N)`` float32)."""
        import torch

        n = feat.shape[1]
        x = self.stats.apply(feat) if self.stats is not None else np.asarray(feat, np.float32)
        left, right = self.crop
        extra = (-(n)) % self.multiple
        if left or right or extra:
            x = np.pad(x, ((0, 0), (left, right + extra)), mode="edge")
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(device)
        if self.channel_axis:
            xt = xt[:, None]
        spk = None if speaker is None else torch.tensor([speaker], dtype=torch.long, device=device)
        with torch.inference_mode():
            codes = self.model.encode(xt, layers=layers)
            y = self.model.decode(codes, speaker=spk, length=n + extra)
        y = y[0, 0] if self.channel_axis else y[0]
        y = y[..., :n].float().cpu().numpy()
        if self.stats is not None:
            y = y * self.stats.std[:, None] + self.stats.mean[:, None]
        return codes[0].cpu().numpy().astype(np.int32), np.ascontiguousarray(y, dtype=np.float32)


# ------------------------------------------------------------------------------------------ vocoder
class RecipeVocoder:
    """``features (n_mels, T), length -> float32 wave (length,)`` at the preset rate: a HiFi-GAN vocoder
    folder (``exp/<vocoder_tag>/vocoder``, ``sqcodec/pretrained/default``, ...) or ``griffinlim``."""

    def __init__(self, spec: str | Path, preset: str, device: Any = "cpu") -> None:
        from .audio import get_preset

        self.preset = get_preset(preset)
        self.spec = str(spec)
        self.hifigan = None
        if self.spec == "griffinlim":
            if not self.preset.center or self.preset.power != 1.0:
                raise RecipeError(
                    f"--vocoder griffinlim cannot invert preset {self.preset.name!r} (not a centred power-1 "
                    "STFT); train a vocoder (stage 4)"
                )
            self.description = "griffinlim (64 iterations)"
            return
        from .vocoder import VocoderError, load_vocoder

        folder = Path(spec)
        if not folder.is_dir():
            raise RecipeError(
                f"--vocoder {spec}: no such vocoder folder (run stage 4, or pass --vocoder griffinlim or a "
                "folder with vocoder.json + vocoder.safetensors)"
            )
        try:
            self.hifigan = load_vocoder(folder, device=device)
        except VocoderError as err:
            raise RecipeError(str(err)) from None
        if self.hifigan.preset.name != self.preset.name:
            raise RecipeError(
                f"{folder}: the vocoder was trained on mel preset {self.hifigan.preset.name!r}, the model "
                f"uses {self.preset.name!r}"
            )
        size = self.hifigan.record.get("size") or "custom"
        self.description = f"hifigan {size} ({folder})"

    def __call__(self, features: np.ndarray, length: int) -> np.ndarray:
        if self.hifigan is None:
            from .vocoder.griffinlim import griffin_lim

            wave = griffin_lim(features, self.preset.name, length=length)
        else:
            import torch

            wave = self.hifigan.vocode(torch.from_numpy(np.ascontiguousarray(features, np.float32)))
            wave = wave.float().cpu().numpy()
        wave = np.asarray(wave, np.float32)[:length]
        if wave.shape[0] < length:
            wave = np.pad(wave, (0, length - wave.shape[0]))
        return wave


# ------------------------------------------------------------------------------------------ audio
class _ReferenceAudio:
    """Utterance -> reference wave at the preset rate, from a data dir's ``wav.scp`` [+ ``segments``],
    cut exactly as stage 1 (:func:`sqcodec.recipe_tools.extract_feats`) cut it."""

    def __init__(self, data_dir: Path, preset: Any) -> None:
        self.preset = preset
        self.wav_scp = Path(data_dir) / "wav.scp"
        if not self.wav_scp.is_file():
            raise RecipeError(f"{self.wav_scp}: missing (run stage 0)")
        self.wavs = dict(read_table(self.wav_scp))
        seg = Path(data_dir) / "segments"
        self.segments = {u: v.split()[:3] for u, v in read_table(seg)} if seg.is_file() else None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self, rec: str) -> np.ndarray:
        from .audio import load_mono

        path = self.wavs.get(rec)
        if path is None:
            raise RecipeError(f"{self.wav_scp}: no entry {rec!r}")
        if path.rstrip().endswith("|"):
            raise RecipeError(f"{self.wav_scp}: {rec}: pipe entries are not supported; list audio files")
        if rec not in self._cache:
            self._cache.clear()
            self._cache[rec] = load_mono(path, self.preset.sample_rate)[0]
        return self._cache[rec]

    def __call__(self, utt: str) -> np.ndarray:
        p = self.preset
        if self.segments is None:
            wave = self._load(utt)
        else:
            if utt not in self.segments:
                raise RecipeError(f"{self.wav_scp.parent}/segments: no segment {utt!r}")
            rec, start, end = self.segments[utt]
            full = self._load(rec)
            a = int(round(float(start) * p.sample_rate))
            b = len(full) if float(end) < 0 else int(round(float(end) * p.sample_rate))
            wave = full[a:b]
        if p.fixed_length is not None:
            wave = np.pad(wave[: p.fixed_length], (0, max(0, p.fixed_length - len(wave))))
        return np.asarray(wave, np.float32)


# ------------------------------------------------------------------------------------------ decode
def _speaker_ids(
    model: Any, exp_dir: Path, utt2spk: Path | None, utts: Sequence[str]
) -> dict[str, int] | None:
    if not getattr(model.decoder, "uses_speaker", False):
        return None
    spk_file = exp_dir / "speakers.json"
    if not spk_file.is_file():
        raise RecipeError(f"{spk_file}: missing; the model's decoder needs speaker ids")
    spk_map = json.loads(spk_file.read_text(encoding="utf-8"))
    if utt2spk is None or not Path(utt2spk).is_file():
        raise RecipeError(f"the model's decoder needs speaker ids: no utt2spk ({utt2spk})")
    table = dict(read_table(Path(utt2spk)))
    out = {}
    for utt in utts:
        spk = table.get(utt)
        if spk is None:
            raise RecipeError(f"{utt2spk}: no speaker for utterance {utt!r}")
        if spk not in spk_map:
            raise RecipeError(
                f"{utt2spk}: speaker {spk!r} of {utt} is not in {spk_file} ({len(spk_map)} training "
                "speakers): this decoder needs known speakers (decode another set with --decode_sets)"
            )
        out[utt] = int(spk_map[spk])
    return out


def _suffix(job: int | None) -> str:
    return "" if job is None else f".{job}"


def decode_set(
    exp_dir: Path,
    set_name: str,
    feats_scp: Path,
    raw_scp: Path,
    data_dir: Path,
    preset: str,
    vocoder: str | Path,
    layers: str | Sequence[int] | None = None,
    feat_stats: Path | None = None,
    utt2spk: Path | None = None,
    ckpt: str | Path | None = None,
    job: int | None = None,
    device: str = "cpu",
    out_root: Path | None = None,
) -> dict[str, Any]:
    """Decode every utterance of ``feats_scp`` (see the module docstring). ``feat_stats``: the train stats
    ``feats_scp`` is standardised with (undone before vocoding); ``raw_scp``: the raw features of the same
    set (the resynthesis input). Returns a summary dict."""
    import kaldiio
    import torch

    from .audio import FeatureStats, destandardise, get_preset, write_audio
    from .train.checkpoint import CheckpointError, load_model

    exp_dir = Path(exp_dir)
    out_root = Path(out_root) if out_root is not None else exp_dir
    p = get_preset(preset)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    path = find_model_checkpoint(exp_dir, ckpt)
    try:
        model, cfg = load_model(path, map_location="cpu")
    except CheckpointError as err:
        raise RecipeError(str(err)) from None
    model = model.to(dev).eval()
    model_preset = (cfg.get("data") or {}).get("preset")
    if model_preset and model_preset != p.name:
        raise RecipeError(
            f"{path}: the model was trained on preset {model_preset!r}, the recipe uses {p.name!r}"
        )
    if type(model.quantizer).__name__ == "HierarchicalSQ":
        raise RecipeError(
            f"{path}: multi-resolution (HierarchicalSQ) codes are not supported by the recipe decoder"
        )
    io = _ModelIO(model, cfg, exp_dir)
    num_layers = int(model.quantizer.num_layers)
    counts = parse_layers(layers, num_layers)
    sizes = [int(k) for k in model.quantizer.codebook_sizes]
    stats = FeatureStats.load(feat_stats) if feat_stats else None
    voc = RecipeVocoder(vocoder, p.name, device=dev)
    ref_audio = _ReferenceAudio(Path(data_dir), p)

    feats = kaldiio.load_scp(str(feats_scp))
    raw = kaldiio.load_scp(str(raw_scp))
    utts = [u for u, _ in read_table(Path(feats_scp))]
    if not utts:
        raise RecipeError(f"{feats_scp}: no utterances")
    speakers = _speaker_ids(model, exp_dir, utt2spk, utts)

    sfx = _suffix(job)
    dirs = {n: out_root / f"decode_{set_name}_L{n}" for n in counts}
    ref_dir, resyn_dir = out_root / f"decode_{set_name}_ref", out_root / f"decode_{set_name}_resyn"
    for d in (*dirs.values(), ref_dir, resyn_dir):
        (d / "wav").mkdir(parents=True, exist_ok=True)
        (d / "log").mkdir(parents=True, exist_ok=True)
    common = {
        "set": set_name,
        "preset": p.name,
        "sample_rate": p.sample_rate,
        "hop": p.hop_length,
        "checkpoint": str(path.resolve()),
        "step": None,
        "features": str(Path(feats_scp)),
        "feature_stats": str(feat_stats) if feat_stats else None,
        "vocoder": voc.description,
    }
    with contextlib.suppress(Exception):
        from .train.checkpoint import load_checkpoint

        common["step"] = int(load_checkpoint(path).get("step"))
    for n, d in dirs.items():
        info = common | {"layers": n, "num_layers": num_layers, "codebook_sizes": sizes[:n]}
        info["bits_per_position"] = float(sum(math.log2(k) for k in sizes[:n]))
        write_text_atomic(d / "info.json", json.dumps(info, indent=1) + "\n")
    for d, what in ((ref_dir, "reference"), (resyn_dir, "resynthesis")):
        write_text_atomic(d / "info.json", json.dumps(common | {"what": what}, indent=1) + "\n")

    t0 = time.perf_counter()
    logs: dict[Any, Any] = {}
    with contextlib.ExitStack() as stack:
        writers = {}
        tmp_scps = []
        for n, d in dirs.items():
            for kind, fn in (("feats", None), ("codes", "numpy")):
                ark = (d / f"{kind}{sfx}.ark").absolute()
                scp = d / f"{kind}{sfx}.scp"
                tmp = scp.with_name(f".{scp.name}.tmp")
                tmp_scps.append((tmp, scp))
                writers[n, kind] = stack.enter_context(
                    kaldiio.WriteHelper(f"ark,scp:{ark},{tmp.absolute()}", write_function=fn)
                )
        for key, d in (*dirs.items(), ("ref", ref_dir), ("resyn", resyn_dir)):
            logs[key] = stack.enter_context(open(d / "log" / f"decode{sfx}.log", "w", encoding="utf-8"))
        for i, utt in enumerate(utts):
            t_utt = time.perf_counter()
            x = np.asarray(feats[utt], np.float32).T  # (n_mels, N)
            gt = np.asarray(raw[utt], np.float32).T
            wave = ref_audio(utt)
            length = len(wave)
            if p.num_frames(length) != x.shape[1] or gt.shape != x.shape:
                raise RecipeError(
                    f"{utt}: {x.shape[1]} feature frames (raw {gt.shape[1]}) but {length} reference samples "
                    f"give {p.num_frames(length)} frames of preset {p.name!r} (features of another data dir?)"
                )
            write_audio(ref_dir / "wav" / f"{utt}.wav", wave, p.sample_rate)
            print(f"{utt} samples={length}", file=logs["ref"])
            write_audio(resyn_dir / "wav" / f"{utt}.wav", voc(gt, length), p.sample_rate)
            print(f"{utt} frames={gt.shape[1]} samples={length}", file=logs["resyn"])
            spk = None if speakers is None else speakers[utt]
            for n, d in dirs.items():
                codes, y = io.encode_decode(x, n, spk, dev)
                if stats is not None:
                    y = np.asarray(destandardise(y, stats), np.float32)
                writers[n, "feats"](utt, np.ascontiguousarray(y.T))
                writers[n, "codes"](utt, codes)
                write_audio(d / "wav" / f"{utt}.wav", voc(y, length), p.sample_rate)
                print(f"{utt} frames={x.shape[1]} codes={list(codes.shape)} samples={length}", file=logs[n])
            print(
                f"[{i + 1}/{len(utts)}] {utt}: {x.shape[1]} frames, {time.perf_counter() - t_utt:.2f} s",
                flush=True,
            )
    for tmp, scp in tmp_scps:
        os.replace(tmp, scp)
    return {
        "utterances": len(utts),
        "layers": counts,
        "checkpoint": str(path),
        "vocoder": voc.description,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# ------------------------------------------------------------------------------------------ scoring
def wave_metrics(spec: str | Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(metrics to compute, notes on those skipped because pesq / pystoi are not installed)."""
    from .eval.score import parse_metrics

    names = parse_metrics(list(WAVE_METRICS) if not spec else spec)
    keep, notes = [], []
    for n in names:
        mod = _OPTIONAL.get(n)
        if mod and importlib.util.find_spec(mod) is None:
            notes.append(f"{n}: skipped, the '{mod}' package is not installed (pip install {mod})")
            continue
        keep.append(n)
    return keep, notes


def _decode_dirs(exp_dir: Path, set_name: str) -> list[tuple[str, Path]]:
    found = []
    for d in sorted(Path(exp_dir).glob(f"decode_{set_name}_*")):
        m = _DECODE_RE.match(d.name)
        if m and m.group("set") == set_name and d.is_dir():
            found.append((m.group("name"), d))
    # resyn first, then L1, L2, ... by layer count
    return sorted(found, key=lambda x: -1 if x[0] == "resyn" else int(x[0][1:]))


def _feature_report(dec_scp: Path, ref_scp: Path, preset: str, stats: Any) -> dict[str, Any]:
    import kaldiio

    from .eval import metrics as M

    ref = kaldiio.load_scp(str(ref_scp))
    rows = []
    for utt, mat in kaldiio.load_scp(str(dec_scp)).items():
        if utt not in ref:
            raise RecipeError(f"{dec_scp}: {utt} is not in {ref_scp}")
        a, b = np.asarray(ref[utt], np.float64).T, np.asarray(mat, np.float64).T
        if a.shape != b.shape:
            raise RecipeError(f"{dec_scp}: {utt}: decoded {b.shape} vs reference {a.shape} features")
        row = {
            "key": utt,
            "log_mel_rmse": M.log_mel_rmse(a, b, preset),
            "mel_mse_db2": M.mel_mse_db(a, b, preset),
        }
        if stats is not None:
            row["log_mel_rmse_norm"] = M.log_mel_rmse(a, b, preset, stats=stats)
        rows.append(row)
    if not rows:
        raise RecipeError(f"{dec_scp}: no utterances")
    names = [k for k in rows[0] if k != "key"]
    return {"metrics": names, "rows": rows, "means": {n: float(np.mean([r[n] for r in rows])) for n in names}}


def _codes_report(codes_scp: Path, info: dict) -> dict[str, Any]:
    import kaldiio

    sizes = [int(k) for k in info["codebook_sizes"]]
    counts = [np.zeros(k, np.int64) for k in sizes]
    positions = 0
    for _, c in kaldiio.load_scp(str(codes_scp)).items():
        c = np.asarray(c)
        if c.shape[0] != len(sizes):
            raise RecipeError(f"{codes_scp}: codes with {c.shape[0]} layers, info.json says {len(sizes)}")
        for layer in range(c.shape[0]):
            counts[layer] += np.bincount(c[layer].reshape(-1).astype(np.int64), minlength=sizes[layer])[
                : sizes[layer]
            ]
        positions += int(np.prod(c.shape[1:]))
    ppl = []
    for n in counts:
        q = n[n > 0] / max(n.sum(), 1)
        ppl.append(float(np.exp(-np.sum(q * np.log(q)))) if n.sum() else float("nan"))
    return {"codebook_sizes": sizes, "perplexity": ppl, "latent_positions": positions}


def score_sets(
    exp_dir: Path,
    sets: Sequence[str],
    preset: str,
    ref_scps: dict[str, Path],
    out_dir: Path,
    stats_path: Path | None = None,
    metrics: str | Sequence[str] | None = None,
) -> list[Path]:
    """Score every decode folder of ``sets`` (see the module docstring): ``out_dir/<set>_<name>.{json,md}``
    for ``name`` in ``resyn``, ``L1``, ..., ``out_dir/summary.{md,json}`` and the one-page
    ``out_dir/report.md`` with spectrogram comparisons (:mod:`sqcodec.eval.report`). Returns the paths."""
    import kaldiio

    from .audio import FeatureStats, get_preset
    from .eval.score import score_dirs, to_markdown, write_json

    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    p = get_preset(preset)
    names, notes = wave_metrics(metrics)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    stats = FeatureStats.load(stats_path) if stats_path else None
    written = []
    for s in sets:
        ref_dir = exp_dir / f"decode_{s}_ref" / "wav"
        if not ref_dir.is_dir():
            raise RecipeError(f"{ref_dir}: missing (run stage 5 for set {s})")
        dirs = _decode_dirs(exp_dir, s)
        if not [n for n, _ in dirs if n != "resyn"]:
            raise RecipeError(f"{exp_dir}: no decode_{s}_L<n> folders (run stage 5)")
        for name, d in dirs:
            info = (
                json.loads((d / "info.json").read_text(encoding="utf-8"))
                if (d / "info.json").is_file()
                else {}
            )
            rep = (
                score_dirs(ref_dir, d / "wav", p.name, names)
                if names
                else {"metrics": [], "rows": [], "means": {}}
            )
            if rep.get("unmatched_ref"):
                raise RecipeError(
                    f"{d}/wav: {len(rep['unmatched_ref'])} reference utterance(s) have no decoded wav"
                )
            rep |= {"set": s, "decode": name, "dir": str(d), "info": info, "skipped": notes}
            seconds = sum(r["duration_s"] for r in rep["rows"]) if rep["rows"] else None
            if (d / "feats.scp").is_file():
                rep["features"] = _feature_report(d / "feats.scp", ref_scps[s], p.name, stats)
            if (d / "codes.scp").is_file():
                codes = _codes_report(d / "codes.scp", info)
                if seconds is None:  # no wave metrics: the duration from the feature frames
                    ref = kaldiio.load_scp(str(ref_scps[s]))
                    seconds = sum(ref[k].shape[0] for k in ref) * p.hop_length / p.sample_rate
                lps = codes["latent_positions"] / seconds
                codes["latents_per_second"] = lps
                codes["bits_per_second"] = lps * float(sum(math.log2(k) for k in codes["codebook_sizes"]))
                rep["code_stats"] = codes
            base = out_dir / f"{s}_{name}"
            written.append(write_json(rep, base.with_suffix(".json")))
            md = f"# {s} / {name}: {info.get('vocoder', '')}\n\n" + to_markdown(rep) + _extra_markdown(rep)
            write_text_atomic(base.with_suffix(".md"), md)
            written.append(base.with_suffix(".md"))
    written += write_summary(out_dir, sets)
    from .eval.report import write_experiment_report

    written += write_experiment_report(
        exp_dir, out_dir, sets, {s: _decode_dirs(exp_dir, s) for s in sets}, p.name
    )
    return written


def _f(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _extra_markdown(rep: dict) -> str:
    out = []
    feats = rep.get("features")
    if feats:
        vals = ", ".join(f"{n} {_f(feats['means'][n])}" for n in feats["metrics"])
        out.append(f"- feature domain (decoded vs ground-truth features, mean over utterances): {vals}")
    codes = rep.get("code_stats")
    if codes:
        ppl = ", ".join(_f(v, 2) for v in codes["perplexity"])
        out.append(
            f"- codes: {_f(codes['bits_per_second'], 1)} bits/s ({_f(codes['latents_per_second'], 2)} latent "
            f"positions/s x sum of log2 K over {len(codes['codebook_sizes'])} layer(s) of sizes "
            f"{codes['codebook_sizes']}), perplexity per layer [{ppl}]"
        )
    out += [f"- {note}" for note in rep.get("skipped") or []]
    return "".join(f"{line}\n" for line in out)


SUMMARY_COLUMNS = (
    ("bps", "bits/s"),
    ("feat_log_mel_rmse", "log-mel RMSE ↓"),
    ("feat_log_mel_rmse_norm", "log-mel RMSE norm ↓"),
    ("feat_mel_mse_db2", "mel dB² ↓"),
    ("wav_log_mel_rmse", "wav log-mel RMSE ↓"),
    ("stoi", "STOI ↑"),
    ("pesq_wb", "PESQ-wb ↑"),
    ("perplexity", "perplexity per layer"),
)


def write_summary(scores_dir: Path, sets: Sequence[str]) -> list[Path]:
    """``summary.md`` / ``summary.json``: one row per set and decode folder (resyn, L1, L2, ...)."""
    scores_dir = Path(scores_dir)
    rows = []
    vocoders = set()
    skipped: set[str] = set()
    for s in sets:
        reps = []
        for f in scores_dir.glob(f"{s}_*.json"):
            rep = json.loads(f.read_text(encoding="utf-8"))
            if rep.get("set") == s:
                reps.append(rep)
        if not reps:
            raise RecipeError(f"{scores_dir}: no scores for set {s!r}")
        reps.sort(key=lambda r: -1 if r["decode"] == "resyn" else int(r["decode"][1:]))
        for rep in reps:
            feats = (rep.get("features") or {}).get("means", {})
            codes = rep.get("code_stats") or {}
            means = rep.get("means") or {}
            rows.append(
                {
                    "set": s,
                    "decode": rep["decode"],
                    "bps": codes.get("bits_per_second"),
                    "feat_log_mel_rmse": feats.get("log_mel_rmse"),
                    "feat_log_mel_rmse_norm": feats.get("log_mel_rmse_norm"),
                    "feat_mel_mse_db2": feats.get("mel_mse_db2"),
                    "wav_log_mel_rmse": means.get("log_mel_rmse"),
                    "stoi": means.get("stoi"),
                    "pesq_wb": means.get("pesq_wb"),
                    "perplexity": codes.get("perplexity"),
                    "utterances": rep.get("count"),
                }
            )
            vocoders.add((rep.get("info") or {}).get("vocoder") or "?")
            skipped.update(rep.get("skipped") or [])
    cols = [
        c
        for c in SUMMARY_COLUMNS
        if c[0] != "feat_log_mel_rmse_norm" or any(r[c[0]] is not None for r in rows)
    ]
    lines = ["| set | decode | " + " | ".join(h for _, h in cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r[key]
            if key == "perplexity":
                cells.append("—" if not v else " / ".join(_f(x, 1) for x in v))
            elif key == "bps":
                cells.append("—" if v is None else _f(v, 1))
            elif key.startswith("feat_") and r["decode"] == "resyn":
                cells.append("—")
            else:
                cells.append(_f(v))
        lines.append(f"| {r['set']} | {r['decode']} | " + " | ".join(cells) + " |")
    notes = [
        "resyn: the vocoder on the ground-truth features (its own ceiling); L<n>: codes of the first n "
        "layers decoded by the model, then vocoded.",
        "log-mel RMSE / mel dB²: decoded vs ground-truth features (feature domain, before the vocoder); "
        "log-mel RMSE = sqrt(mean (ln mel_ref - ln mel_dec)²) on the preset's natural-log mel, "
        "'norm' = the same on features standardised with the train stats; mel dB² = mean over bins and "
        "frames of (20·log10 mel_ref − 20·log10 mel_dec)² after undoing any normalisation (DESIGN §3).",
        "wav log-mel RMSE, STOI, PESQ-wb: the vocoded wav vs the reference wav (sqcodec score).",
        "bits/s: latent positions per second x sum over the kept layers of log2 K (no entropy coding).",
        f"vocoder: {', '.join(sorted(vocoders))}",
        *sorted(skipped),
    ]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    md = scores_dir / "summary.md"
    write_text_atomic(md, text)
    js = scores_dir / "summary.json"
    clean = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in rows
    ]
    write_text_atomic(js, json.dumps({"rows": clean, "notes": notes}, indent=1) + "\n")
    return [md, js]
