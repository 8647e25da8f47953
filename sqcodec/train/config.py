"""Training configs: YAML files holding every hyperparameter, merged over defaults, with dotted overrides.

A config has five sections. ``model`` is passed unchanged to :func:`sqcodec.model.build_model`; ``data``,
``optim``, ``schedule`` and ``train`` are read by the trainer and checked against :data:`DEFAULTS` (an
unknown key is an error, so a typo never silently falls back to a default). Files are read with a safe
YAML loader (no object construction) that also accepts ``1e-5`` as a float (plain YAML 1.1 reads it as a
string). The resolved config is written into the experiment directory as ``config.yaml``.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path
from typing import Any

import yaml

#: Every trainer-side key with its default. ``model`` is free-form (the model builder checks it).
DEFAULTS: dict[str, Any] = {
    "model": {},
    "data": {
        # "features" (log-mel features from audio / .npy / feats.scp) or "image" (split files of
        # sqcodec.data.images: data.train / data.valid name .npz files; crops, stats and speakers unused)
        "kind": "features",
        # images: "real" (pixels / 255, (B, C, H, W)) or "onehot" (class map of a one-channel image as
        # (B, num_classes, H, W), for the categorical reconstruction terms)
        "image_input": "real",
        # images, onehot: classes (null: the split file's num_classes, else 256 grey levels)
        "num_classes": None,
        # Feature source for training: a feats.scp, a directory / glob / list of .npy feature files, or a
        # directory / glob / list of audio files (then ``preset`` is required). A dict {"scp"|"npy"|"audio":
        # ..., "preset": ...} names the kind explicitly; a list of several such specs is concatenated.
        "train": None,
        # Validation source (same forms). If null, ``valid_holdout`` utterances are held out of ``train``.
        "valid": None,
        # int: number of training utterances held out for validation; float in (0, 1): a fraction.
        "valid_holdout": 0,
        # mel preset name for audio sources (sqcodec.audio.features.PRESETS)
        "preset": None,
        # audio features: "memory" (featurise once per run) or "disk" (.npy cache in <exp>/feats_cache)
        "cache": "memory",
        "cache_dir": None,
        # hold all features in RAM (false: read .npy via mmap / feats.scp per access)
        "in_memory": True,
        # Kaldi matrices are (frames, dims): transpose them to (dims, frames)
        "scp_frames_first": True,
        # speed perturbation of audio training sources (Kaldi/ESPnet's 3-way speed perturbation, e.g.
        # [0.9, 1.0, 1.1]): every training utterance also enters at each factor != 1, resampled so that it
        # plays f times faster (tempo and pitch, like ``sox speed f``); validation is never perturbed
        "speed_perturb": [],
        # speaker ids: null | "parent_dir" | "prefix" (utt id up to the first "_") | "utt2spk" (the Kaldi
        # file beside feats.scp) | a path to an utt2spk-style file ("utt spk" per line)
        "speakers": None,
        # standardisation: null | "auto" (per-dimension mean/std of the training set, saved as
        # <exp>/stats.json) | a stats file (sqcodec.audio.stats .json/.npz, or an .npz with mean/std)
        "stats": None,
        # random training crops: crop_frames (+ crop_pad frames of context the network consumes)
        "crop_frames": 32,
        "crop_pad": 0,
        # utterances shorter than the crop: "drop" or "pad" (zero-padded, with a boolean mask)
        "short": "drop",
        # utterances with fewer frames are ignored entirely (train and valid)
        "min_frames": 1,
        # add a channel axis: batches (B, 1, n_mels, T) for 2-D networks instead of (B, n_mels, T)
        "channel_axis": False,
        # validation: "full" (whole utterances, trimmed so that length - crop_pad is a multiple of
        # valid_multiple) or "crop" (one fixed centre crop of crop_frames + crop_pad per utterance)
        "valid_mode": "full",
        "valid_multiple": 1,
        "valid_batch_size": 1,
        # at most this many validation utterances (first ones in sorted order); 0 = all
        "valid_max": 0,
    },
    "optim": {
        "name": "adam",
        "lr": 4.0e-4,
        "betas": [0.9, 0.999],
        "eps": 1.0e-8,
        "weight_decay": 0.0,
    },
    "schedule": {
        # "multistep" (MultiStepLR stepped every iteration, SQ-VAE speech), "plateau" (ReduceLROnPlateau on
        # the validation loss, SQ-VAE vision / HQ-VAE) or "constant"
        "name": "constant",
        "milestones": [],
        "gamma": 0.5,
        "factor": 0.5,
        "patience": 3,
        "threshold": 1.0e-4,
        "min_lr": 0.0,
    },
    "train": {
        "steps": 1000,
        # per-process batch size; the global batch is batch_size * world_size
        "batch_size": 16,
        "seed": 1234,
        "log_every": 50,
        # 0 disables validation (then best.pt is never written)
        "val_every": 1000,
        "ckpt_every": 1000,
        # periodic checkpoints kept in <exp>/checkpoints (older ones are deleted); 0 keeps all
        "keep_last": 3,
        # gradient-norm clipping threshold; 0 or null disables clipping (the norm is still logged)
        "grad_clip": 1.0,
        # autocast dtype on CUDA: "bf16", "fp16" (with GradScaler) or "none"; CPU always runs fp32
        "amp": "bf16",
        "device": "auto",
        # SyncBatchNorm under multi-GPU DDP: "auto" (on when CUDA and world_size > 1), true, false
        "sync_batchnorm": "auto",
        # DistributedDataParallel(find_unused_parameters=...), for models with conditionally used parameters
        "find_unused_parameters": False,
        # torch.use_deterministic_algorithms (slower on CUDA; CPU runs are deterministic anyway)
        "deterministic": False,
        # consecutive non-finite losses / gradient norms tolerated (those steps are skipped) before aborting
        "max_nonfinite": 20,
        # write TensorBoard events (<exp>/tb) besides the JSONL log; draw <exp>/telemetry.png at the end
        "tensorboard": True,
        "plot": True,
        # experiment directory (when train() is called without out_dir); default exp/<config stem>
        "exp_dir": None,
    },
}

_SECTIONS_CHECKED = ("data", "optim", "schedule", "train")


class ConfigError(ValueError):
    """A config file or override that cannot be used (unknown key, bad value, unreadable file)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-5`` / ``3E4`` as floats (YAML 1.1 needs a dot)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text_or_path: str | Path) -> Any:
    """Parse YAML safely (no object construction). A Path is read; a str is parsed as YAML text."""
    if isinstance(text_or_path, Path):
        try:
            text = text_or_path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{text_or_path}: cannot read config ({e.strerror or e})") from e
        try:
            return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as e:
            raise ConfigError(f"{text_or_path}: invalid YAML ({e})") from e
    return yaml.load(text_or_path, Loader=_Loader)  # noqa: S506


def deep_merge(base: dict, update: dict) -> dict:
    """Recursively merge ``update`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_keys(cfg: dict, where: str = "") -> None:
    for section in _SECTIONS_CHECKED:
        known = DEFAULTS[section]
        given = cfg.get(section) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"{where}section '{section}' must be a mapping, got {type(given).__name__}")
        for key in given:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f" (did you mean '{section}.{close[0]}'?)" if close else ""
                raise ConfigError(f"{where}unknown config key '{section}.{key}'{hint}")
    unknown = [k for k in cfg if k not in DEFAULTS]
    if unknown:
        raise ConfigError(f"{where}unknown config section(s) {unknown}; known: {list(DEFAULTS)}")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.steps=100"`` -> (["train", "steps"], 100). The value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form section.key=value")
    key, _, raw = item.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(cfg: dict, overrides: list[str] | None) -> dict:
    """Apply dotted ``key=value`` overrides to a copy of ``cfg`` (creating nested dicts as needed)."""
    out = copy.deepcopy(cfg)
    for item in overrides or []:
        path, value = parse_override(item)
        node = out
        for p in path[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[path[-1]] = value
    return out


def _plain(obj: Any) -> Any:
    """Round-trip through JSON so the config holds only plain types (safe for weights_only checkpoints)."""
    return json.loads(json.dumps(obj, default=str))


def validate(cfg: dict) -> dict:
    """Check value ranges and choices; returns ``cfg``."""
    t, d, s, o = cfg["train"], cfg["data"], cfg["schedule"], cfg["optim"]

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    for key in ("steps", "batch_size", "log_every", "val_every", "ckpt_every", "keep_last", "seed"):
        need(isinstance(t[key], int) and not isinstance(t[key], bool), f"train.{key} must be an integer")
    need(t["steps"] >= 0, "train.steps must be >= 0")
    need(t["batch_size"] >= 1, "train.batch_size must be >= 1")
    need(t["log_every"] >= 1, "train.log_every must be >= 1")
    need(t["ckpt_every"] >= 1, "train.ckpt_every must be >= 1")
    need(t["val_every"] >= 0, "train.val_every must be >= 0")
    need(t["amp"] in ("bf16", "fp16", "none", None, False), "train.amp must be bf16, fp16 or none")
    need(str(t["device"]).split(":")[0] in ("auto", "cpu", "cuda"), "train.device must be auto, cpu or cuda")
    need(
        s["name"] in ("multistep", "plateau", "constant"), "schedule.name must be multistep/plateau/constant"
    )
    need(str(o["name"]).lower() in ("adam", "adamw"), "optim.name must be adam or adamw")
    need(
        isinstance(o["betas"], (list, tuple)) and len(o["betas"]) == 2, "optim.betas must be a pair [b1, b2]"
    )
    for key in ("lr", "eps", "weight_decay"):
        need(isinstance(o[key], (int, float)), f"optim.{key} must be a number, got {o[key]!r}")
    need(d["kind"] in ("features", "image"), "data.kind must be features or image")
    need(d["image_input"] in ("real", "onehot"), "data.image_input must be real or onehot")
    need(d["short"] in ("drop", "pad"), "data.short must be drop or pad")
    need(d["cache"] in ("memory", "disk"), "data.cache must be memory or disk")
    need(d["valid_mode"] in ("full", "crop"), "data.valid_mode must be full or crop")
    need(int(d["crop_frames"]) >= 1 and int(d["crop_pad"]) >= 0, "data.crop_frames >= 1, data.crop_pad >= 0")
    need(int(d["valid_multiple"]) >= 1, "data.valid_multiple must be >= 1")
    sp = d["speed_perturb"] or []
    need(
        isinstance(sp, list) and all(isinstance(f, (int, float)) and 0.5 <= f <= 2.0 for f in sp),
        f"data.speed_perturb must be a list of factors in [0.5, 2], got {sp!r}",
    )
    if s["name"] == "plateau":
        need(t["val_every"] > 0, "schedule 'plateau' steps on the validation loss: set train.val_every > 0")
    return cfg


def resolve_config(raw: dict | None, overrides: list[str] | None = None, where: str = "") -> dict:
    """Merge ``raw`` (a parsed YAML mapping) over :data:`DEFAULTS`, apply overrides, check, return plain."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}a config must be a YAML mapping, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    for section in list(raw):
        if raw[section] is None:
            raw[section] = {}
    _check_keys(raw, where)
    cfg = deep_merge(DEFAULTS, raw)
    return validate(_plain(cfg))


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    """Read a YAML config file, merge defaults, apply ``section.key=value`` overrides, validate."""
    path = Path(path)
    return resolve_config(load_yaml(path), overrides, where=f"{path}: ")


def save_config(cfg: dict, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .checkpoint import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))


def diff_configs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        key = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, key + ".")
        elif va != vb:
            out.append(key)
    return out
