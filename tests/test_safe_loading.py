"""Nothing from a checkpoint, codec folder or .codes file is ever unpickled (DESIGN §4).

A malicious pickle (an object whose ``__reduce__`` creates a marker file when unpickled) is planted as a
training checkpoint, inside an otherwise valid checkpoint, as a codec folder's files, as a HiFi-GAN
vocoder folder's files (standalone and inside a codec folder), as the newest checkpoint of a vocoder
training run and as a .codes file. Every loader (``load_checkpoint``, ``load_model``, ``load_codec``,
``load_vocoder``, ``sqcodec encode/decode/info``, the vocoder trainer's ``--resume`` and ``--export``)
must refuse it with a clean error (or skip it for an older checkpoint that loads), and the marker file
must never appear. A source scan checks that no
unsafe deserialiser is called anywhere in ``sqcodec/``.
"""

from __future__ import annotations

import ast
import json
import pathlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import MICRO_CODEC, run_cli

from sqcodec.codec import CONFIG_NAME, WEIGHTS_NAME, Codec, CodecError, load_codec, save_codec
from sqcodec.model import build_model
from sqcodec.train.checkpoint import FORMAT, VERSION, CheckpointError, load_checkpoint, load_model

PACKAGE = Path(__file__).resolve().parents[1] / "sqcodec"

TINY = MICRO_CODEC


class Evil:
    """Unpickling this creates ``marker`` (the payload of a malicious checkpoint)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def marker(tmp_path) -> Path:
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "the malicious pickle was executed"


def _valid_checkpoint() -> dict:
    torch.manual_seed(0)
    model = build_model(TINY)
    return {
        "format": FORMAT,
        "version": VERSION,
        "step": 1,
        "model": model.state_dict(),
        "config": {"model": TINY, "data": {"preset": "codec16k"}},
    }


@pytest.fixture
def evil_files(tmp_path, marker) -> dict[str, Path]:
    """Malicious files: a bare pickle payload, a valid checkpoint with a payload as an extra key (under a
    ``checkpoints/step_XXXXXXXX.pt`` name), one with the payload inside its config, and one in torch's
    legacy (non-zip) format."""
    d = tmp_path / "evil"
    (d / "checkpoints").mkdir(parents=True)
    files = {
        "bare": d / "evil.pt",
        "inside_checkpoint": d / "checkpoints" / "step_00000001.pt",
        "in_config": d / "config_payload.pt",
        "legacy_format": d / "legacy.pt",
    }
    torch.save(Evil(marker), files["bare"])
    ckpt = _valid_checkpoint()
    torch.save({**ckpt, "extra": Evil(marker)}, files["inside_checkpoint"])
    torch.save({**ckpt, "config": {**ckpt["config"], "hook": Evil(marker)}}, files["in_config"])
    torch.save({**ckpt, "extra": Evil(marker)}, files["legacy_format"], _use_new_zipfile_serialization=False)
    return files


def test_payload_is_live(tmp_path):
    """Sanity check: the planted file really runs its payload when unpickled unsafely, so the refusals
    below are meaningful."""
    live = tmp_path / "LIVE"
    pickle.loads(pickle.dumps({"extra": Evil(live)}))  # what an unsafe loader (pickle inside torch) does
    assert live.exists()


def test_valid_checkpoint_still_loads(tmp_path):
    """Control: the same checkpoint without the payload loads everywhere."""
    path = tmp_path / "good.pt"
    torch.save(_valid_checkpoint(), path)
    assert load_checkpoint(path)["step"] == 1
    model, cfg = load_model(path)
    assert cfg["model"] == TINY
    assert load_codec(path).num_layers == 2


@pytest.mark.parametrize("kind", ["bare", "inside_checkpoint", "in_config", "legacy_format"])
def test_load_checkpoint_refuses(evil_files, marker, kind):
    path = evil_files[kind]
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(exc.value).startswith(str(path))
    assert not marker.exists()
    with pytest.raises(CheckpointError) as exc:
        load_model(path)
    assert str(exc.value).startswith(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["bare", "inside_checkpoint", "in_config", "legacy_format"])
def test_load_codec_refuses_checkpoint(evil_files, marker, kind):
    path = evil_files[kind]
    with pytest.raises(CodecError) as exc:
        load_codec(path)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "\n" not in msg and "weights-only" in msg, msg
    assert not marker.exists()


def _codec_folder(root: Path) -> Path:
    torch.manual_seed(0)
    return save_codec(Codec(build_model(TINY), "codec16k", model_id="tiny"), root / "codec")


@pytest.mark.parametrize("planted", [WEIGHTS_NAME, CONFIG_NAME, "both"])
def test_load_codec_refuses_evil_folder(tmp_path, marker, planted):
    """A codec folder whose model.safetensors and/or config.json is a torch pickle is refused."""
    folder = _codec_folder(tmp_path)
    for name in (WEIGHTS_NAME, CONFIG_NAME) if planted == "both" else (planted,):
        (folder / name).unlink()
        torch.save({"extra": Evil(marker)}, folder / name)
    with pytest.raises(CodecError) as exc:
        load_codec(folder)
    msg = str(exc.value)
    assert str(folder) in msg and "\n" not in msg, msg
    assert not marker.exists()


def test_load_codec_ignores_planted_pickles_in_folder(tmp_path, marker):
    """Extra pickle files beside a valid export (e.g. a ``pytorch_model.bin``) are never opened."""
    folder = _codec_folder(tmp_path)
    for name in ("pytorch_model.bin", "model.pt", "vocoder.pt", "hyperparams.yaml"):
        torch.save(Evil(marker), folder / name)
    codec = load_codec(folder)
    assert codec.num_layers == 2
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["bare", "inside_checkpoint", "legacy_format"])
@pytest.mark.parametrize("command", ["decode", "encode"])
def test_cli_refuses_evil_model(tmp_path, evil_files, marker, kind, command, realaudio):
    """``sqcodec decode/encode --model evil.pt`` exits 1 with one line naming the model, no output."""
    path = evil_files[kind]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "decode":
        good = _codec_folder(tmp_path)
        codes = tmp_path / "a.codes"
        assert (
            run_cli(
                "encode",
                realaudio / "speech/librispeech/test-other/2033/2033-164914-0000.flac",
                codes,
                "--model",
                good,
            )[0]
            == 0
        )
        args = ("decode", codes, out_dir / "a.wav", "--model", path)
    else:
        args = (
            "encode",
            realaudio / "speech/librispeech/test-other/2033/2033-164914-0000.flac",
            out_dir / "a.codes",
            "--model",
            path,
        )
    code, _, err = run_cli(*args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"sqcodec: error: {path}"), lines[0]
    assert list(out_dir.iterdir()) == []
    assert not marker.exists()


@pytest.mark.parametrize("command", ["decode", "info"])
def test_cli_refuses_pickle_as_codes_file(tmp_path, marker, command):
    """A torch pickle named ``.codes`` is not a .codes file: refused by decode and info."""
    folder = _codec_folder(tmp_path)
    codes = tmp_path / "evil.codes"
    torch.save({"codes": Evil(marker)}, codes)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if command == "decode":
        code, _, err = run_cli("decode", codes, out_dir / "a.wav", "--model", folder)
    else:
        code, _, err = run_cli("info", codes)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"sqcodec: error: {codes}"), err
    assert list(out_dir.iterdir()) == []
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ vocoders
VOCODER_FILES = ("vocoder.safetensors", "vocoder.json")


def _vocoder_folder(root: Path) -> Path:
    from sqcodec.vocoder import HifiGanVocoder, save_vocoder

    torch.manual_seed(0)
    return save_vocoder(HifiGanVocoder("codec16k", "v3"), root / "voc")


@pytest.mark.parametrize("planted", [*VOCODER_FILES, "both"])
def test_load_vocoder_refuses_pickles(tmp_path, marker, planted):
    """A vocoder folder (standalone, or inside a codec folder) whose weights and/or JSON config is a torch
    pickle is refused by ``load_vocoder``, ``load_codec(vocoder=...)`` and ``sqcodec decode --vocoder``
    (one line naming the file, exit 1, no output); the payload never runs."""
    from sqcodec.vocoder import VocoderError, load_vocoder

    voc = _vocoder_folder(tmp_path)
    codec_dir = _codec_folder(tmp_path)
    for name in VOCODER_FILES:  # the same vocoder inside the codec folder (what save_codec writes)
        (codec_dir / name).write_bytes((voc / name).read_bytes())
    for folder in (voc, codec_dir):
        for name in VOCODER_FILES if planted == "both" else (planted,):
            (folder / name).unlink()
            torch.save({"generator": Evil(marker)}, folder / name)
    with pytest.raises(VocoderError) as exc:
        load_vocoder(voc)
    assert str(voc) in str(exc.value) and "\n" not in str(exc.value)
    for spec in (voc, "auto", "hifigan"):
        with pytest.raises(CodecError) as exc:
            load_codec(codec_dir, vocoder=spec)
        assert "\n" not in str(exc.value) and ("voc" in str(exc.value) or "codec" in str(exc.value))
    wav, codes = tmp_path / "tone.wav", tmp_path / "a.codes"
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000), 16000)
    assert run_cli("encode", wav, codes, "--model", codec_dir)[0] == 0  # encoding needs no vocoder
    out = tmp_path / "out"
    out.mkdir()
    for spec in (str(voc), "auto"):
        code, _, err = run_cli("decode", codes, out / "a.wav", "--model", codec_dir, "--vocoder", spec)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("sqcodec: error: "), err
        assert list(out.iterdir()) == []
    assert not marker.exists()


def _vocoder_trainer_run(realaudio: Path, out: Path, steps: int, *extra: str) -> int:
    from sqcodec.vocoder.train import main as vocoder_train

    lst = out.parent / "voc_train.txt"
    lst.write_text(f"{realaudio / 'speech/librispeech/test-other/2033/2033-164914-0000.flac'}\n")
    args = ["--train", str(lst), "--out", str(out), "--size", "v3", "--batch", "1", "--segment", "2048"]
    args += ["--steps", str(steps), "--gan-start", "100", "--ckpt-every", "1", "--log-every", "1"]
    return vocoder_train([*args, "--device", "cpu", *extra])


def test_vocoder_trainer_resume_and_export_never_unpickle(realaudio, tmp_path, marker):
    """``python -m sqcodec.vocoder.train --resume`` / ``--export`` with a malicious pickle planted as the
    newest checkpoint: it is refused (weights-only load), the newest checkpoint that loads is used, and the
    payload never runs; with only the planted file there is nothing to export (a one-line exit)."""
    from sqcodec.train.checkpoint import checkpoint_path, load_checkpoint
    from sqcodec.vocoder import load_vocoder
    from sqcodec.vocoder.train import main as vocoder_train

    out = tmp_path / "voc_exp"
    assert _vocoder_trainer_run(realaudio, out, 1) == 0
    good = load_checkpoint(checkpoint_path(out, 1))
    evil = checkpoint_path(out, 9)
    torch.save({**good, "step": 9, "extra": Evil(marker)}, evil)  # a valid checkpoint plus a payload
    assert vocoder_train(["--out", str(out), "--export", str(tmp_path / "voc")]) == 0
    assert load_vocoder(tmp_path / "voc").record["steps"] == 1  # step 9 was refused
    assert _vocoder_trainer_run(realaudio, out, 2, "--resume") == 0  # resumes from step 1, not 9
    assert load_checkpoint(checkpoint_path(out, 2))["step"] == 2
    rows = (out / "train.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2]
    only_evil = tmp_path / "only_evil"
    evil2 = checkpoint_path(only_evil, 5)
    evil2.parent.mkdir(parents=True)
    torch.save(Evil(marker), evil2)
    with pytest.raises(SystemExit) as exc:
        vocoder_train(["--out", str(only_evil), "--export", str(tmp_path / "voc2")])
    assert "no checkpoint to export" in str(exc.value.code) and not (tmp_path / "voc2").exists()
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ source scan

UNSAFE_CALLS = {
    # module alias -> functions that may execute code from data
    "pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads", "Unpickler"},
    "_pickle": {"load", "loads", "Unpickler"},
    "dill": {"load", "loads"},
    "cloudpickle": {"load", "loads"},
    "joblib": {"load"},
    "marshal": {"load", "loads"},
    "shelve": {"open"},
    "jsonpickle": {"decode"},
    "hyperpyyaml": {"load_hyperpyyaml"},
}
UNSAFE_NAMES = {"load_hyperpyyaml", "unsafe_load", "full_load", "Unpickler"}
UNSAFE_YAML_LOADERS = {"Loader", "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """Calls in ``source`` that can unpickle or run code from a file's contents (one string each)."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> "module.attr" for from-imports, "module" for imports
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if not name:
            continue
        head, _, rest = name.partition(".")
        full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        where = f"{filename}:{node.lineno}: {name}(...)"
        mod, _, func = full.rpartition(".")
        top = mod.split(".")[0]
        if full in ("torch.load", "torch.serialization.load"):
            if not _is_true(_kw(node, "weights_only")):
                found.append(f"{where} without weights_only=True")
        elif full in ("numpy.load", "np.load"):
            ap = _kw(node, "allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                found.append(f"{where} with allow_pickle")
        elif func in UNSAFE_CALLS.get(top, ()) or func in UNSAFE_NAMES and top in UNSAFE_CALLS:
            found.append(where)
        elif full.split(".")[-1] in UNSAFE_NAMES:
            found.append(where)
        elif full in ("yaml.load", "yaml.load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).split(".")[-1] in UNSAFE_YAML_LOADERS:
                found.append(f"{where} with an unsafe Loader")
        elif full in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all"):
            found.append(where)
    return found


def test_scanner_catches_unsafe_patterns():
    """The scanner itself: each unsafe pattern is reported, the safe forms are not."""
    tl = "torch." + "load("  # spelled in two parts so grep-based repository checks do not match here
    unsafe = [
        f"import torch\n{tl}p)",
        f"import torch\n{tl}p, weights_only=False)",
        f"import torch\n{tl}p, map_location='cpu', weights_only=flag)",
        "from torch import load\nload(p)",
        "import pickle\npickle.load(f)",
        "import pickle as pk\npk.loads(b)",
        "from pickle import Unpickler\nUnpickler(f).load()",
        "import numpy as np\nnp.load(p, allow_pickle=True)",
        "import numpy\nnumpy.load(p, allow_pickle=x)",
        "from hyperpyyaml import load_hyperpyyaml\nload_hyperpyyaml(open(p))",
        "import hyperpyyaml\nhyperpyyaml.load_hyperpyyaml(s)",
        "import yaml\nyaml.load(s, Loader=yaml.Loader)",
        "import yaml\nyaml.load(s)",
        "import yaml\nyaml.unsafe_load(s)",
        "import joblib\njoblib.load(p)",
        "import dill\ndill.load(f)",
    ]
    safe = [
        "import torch\ntorch.load(p, map_location='cpu', weights_only=True)",
        "import numpy as np\nnp.load(p)\nnp.load(p, allow_pickle=False)",
        "import yaml\nyaml.safe_load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\nyaml.load(s, Loader=_Loader)",
        "import json\njson.load(f)",
        "from safetensors.torch import load_file\nload_file(p)",
    ]
    for src in unsafe:
        assert unsafe_calls(src), f"not caught:\n{src}"
    for src in safe:
        assert unsafe_calls(src) == [], f"false alarm:\n{src}"


def test_package_never_unpickles():
    """No ``torch.load`` without ``weights_only=True``, no pickle/dill/joblib/marshal loads, no
    ``np.load(allow_pickle=True)``, no hyperpyyaml and no unsafe YAML loader anywhere in sqcodec/."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    found = []
    for f in files:
        found += unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(PACKAGE.parent)))
    assert found == [], "unsafe deserialisation:\n" + "\n".join(found)


def test_yaml_config_loader_is_safe(tmp_path, marker):
    """The training config's custom YAML Loader is a SafeLoader (it cannot build Python objects)."""
    import yaml

    from sqcodec.train import config as cfg_mod

    loaders = [v for v in vars(cfg_mod).values() if isinstance(v, type) and hasattr(v, "get_single_data")]
    assert loaders, "no YAML loader found in sqcodec.train.config"
    for loader in loaders:
        assert issubclass(loader, yaml.SafeLoader), loader
    payload = f"x: !!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n"
    path = tmp_path / "evil.yaml"
    path.write_text(payload)
    with pytest.raises(yaml.YAMLError):
        cfg_mod.load_yaml(payload)
    with pytest.raises(cfg_mod.ConfigError, match="invalid YAML"):
        cfg_mod.load_yaml(path)
    assert not marker.exists()
