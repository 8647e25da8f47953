"""Training configs: defaults merged, dotted overrides typed by YAML, typos rejected, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqcodec.train.config import DEFAULTS, ConfigError, load_config, load_yaml, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "sqcodec" / "configs"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_are_merged_and_overrides_are_typed(tmp_path):
    p = write(tmp_path, "model: {a: 1}\ntrain: {steps: 10}\noptim: {lr: 1e-3}\n")
    cfg = load_config(
        p,
        [
            "train.steps=100",
            "optim.betas=[0.9, 0.9]",
            "schedule.name=multistep",
            "schedule.milestones=[300000, 400000]",
            "data.train=/x/*.npy",
            "model.b.c=2",
        ],
    )
    assert cfg["train"]["steps"] == 100
    assert cfg["train"]["batch_size"] == DEFAULTS["train"]["batch_size"]
    assert cfg["optim"]["lr"] == pytest.approx(1e-3) and isinstance(cfg["optim"]["lr"], float)
    assert cfg["optim"]["betas"] == [0.9, 0.9]
    assert cfg["schedule"]["milestones"] == [300000, 400000]
    assert cfg["data"]["train"] == "/x/*.npy"
    assert cfg["model"] == {"a": 1, "b": {"c": 2}}


def test_exponent_without_dot_is_a_float():
    assert load_yaml("a: 1e-5\nb: 3E4\nc: 1.5\nd: 7") == {"a": 1e-5, "b": 3e4, "c": 1.5, "d": 7}


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path):
    p = write(tmp_path, "train: {step: 10}\n")
    with pytest.raises(ConfigError, match=r"train.step.*did you mean 'train.steps'"):
        load_config(p)
    with pytest.raises(ConfigError, match="unknown config section"):
        load_config(write(tmp_path, "trian: {}\n"))
    with pytest.raises(ConfigError, match="schedule.name"):
        load_config(write(tmp_path, "schedule: {name: cosine}\n"))
    with pytest.raises(ConfigError, match="val_every"):
        load_config(write(tmp_path, "schedule: {name: plateau}\ntrain: {val_every: 0}\n"))


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "tiny.yaml", ["data.train=/a/b/*.flac"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert cfg["model"]["quantizer"]["type"] == "residual_sq"
