"""``sqcodec mushra build``: prepare the stimuli of a MUSHRA test (ITU-R BS.1534-3) and two ways to run it.

For each reference file (matched by relative path, extension ignored, across the reference folder and
every system folder) one trial is made of: the hidden reference, every system, and the anchors. Every
stimulus of the test is resampled (soxr HQ) to one rate, cropped to the shortest stimulus of its trial
(optionally to ``max_seconds``), given the same short raised-cosine fades, loudness-matched to the
reference (BS.1770 integrated loudness by default), scaled together if that would clip, and written as
16-bit WAV. Anchors are made here from the prepared reference (see :mod:`.dsp`), so webMUSHRA's own
anchor generation is switched off. Trial order and condition order come from a seeded generator.

Output (built in a temporary folder beside ``out`` and renamed into place at the end, so a failure leaves
nothing behind)::

    out/index.html  out/test.json  out/stimuli/<trial>/{ref,c1,c2,...}.wav    built-in page (``serve``)
    out/webmushra/configs/<test id>.yaml                                      webMUSHRA config
    out/webmushra/configs/resources/audio/<test id>/<trial>/<condition>.wav   its stimuli
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import dsp
from .common import (
    ANCHORS,
    HIDDEN_REFERENCE,
    PARTICIPANT_FIELDS,
    RESERVED_NAMES,
    TEST_FORMAT,
    MushraError,
    sanitize_test_id,
)

__all__ = ["AUDIO_EXTENSIONS", "BuildResult", "build_test", "list_audio", "parse_anchors", "parse_system"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus", ".oga")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: Peak ceiling after loudness matching (-1 dBFS); a trial that would exceed it is scaled down as a whole.
PEAK_CEILING = 10.0 ** (-1.0 / 20.0)

INSTRUCTIONS = (
    "<p>Listen to the <b>reference</b>, then rate each condition on how close it sounds to the reference "
    "(basic audio quality): 100 means you hear no difference. Scale: 80-100 excellent, 60-80 good, "
    "40-60 fair, 20-40 poor, 0-20 bad.</p><p>One of the conditions is the reference itself: rate it "
    "100. Use headphones in a quiet room; you may replay and switch between the stimuli as often as you "
    "like.</p>"
)


@dataclass
class BuildResult:
    """What :func:`build_test` made."""

    test_dir: Path
    test_id: str
    trials: int
    conditions: list[str]
    sample_rate: int
    webmushra_config: Path
    notes: list[str] = field(default_factory=list)


def parse_system(spec: str) -> tuple[str, Path]:
    """``"name=path"`` or ``"path"`` (named after the folder) -> ``(name, path)``."""
    name, sep, path = spec.partition("=")
    if sep and name and not os.path.exists(spec):
        folder = Path(path)
    else:
        folder = Path(spec)
        name = folder.resolve().name if folder.exists() else folder.name
    if not _NAME_RE.match(name):
        raise MushraError(
            f"{spec}: system name {name!r} must be letters, digits, '_', '-' or '.' (use name=path)"
        )
    if name in RESERVED_NAMES:
        raise MushraError(
            f"{spec}: system name {name!r} is reserved for the reference and anchors (use name=path)"
        )
    return name, folder


def parse_anchors(spec: str | None) -> list[str]:
    """``"lp35,lp7"``, ``"noise"``, ``"none"`` ... -> anchor keywords in the order given."""
    if spec is None:
        return ["lp35", "lp7"]
    out: list[str] = []
    for raw in spec.split(","):
        a = raw.strip().lower()
        if not a or a == "none":
            continue
        if a not in ANCHORS:
            raise MushraError(
                f"--anchors {spec}: unknown anchor {raw.strip()!r} (known: {', '.join(ANCHORS)}, none)"
            )
        if a not in out:
            out.append(a)
    return out


def list_audio(folder: Path) -> dict[str, Path]:
    """Audio files under ``folder`` keyed by relative path without extension (hidden files skipped)."""
    if not folder.is_dir():
        raise MushraError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or p.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if not p.is_file():
            continue
        key = rel.with_suffix("").as_posix()
        if key in found:
            raise MushraError(f"{p}: two audio files for one item ({found[key].name} and {p.name})")
        found[key] = p
    return found


def _match(ref: dict[str, Path], folder: Path, files: dict[str, Path], what: str) -> dict[str, Path]:
    out = {}
    for key, ref_path in ref.items():
        if key not in files:
            raise MushraError(f"{folder / key}.*: missing ({what} has no file for reference {ref_path})")
        out[key] = files[key]
    return out


def _is_output_error(exc: BaseException, tmp: Path, out: Path) -> bool:
    """Whether ``exc`` is about writing the test (disk full, no permission), not about an input."""
    from ..audio.io import AudioError

    if isinstance(exc, AudioError):
        where = exc.path
    elif isinstance(exc, OSError) and exc.errno is not None:
        where = exc.filename
        if where is None:
            return True  # a failed write() names no file; inputs are read by load_mono (AudioError)
    else:
        return False
    where = Path(str(where)).absolute()
    return any(where == p or where.is_relative_to(p) for p in (tmp.absolute(), out.absolute()))


def _output_error(out: Path, exc: BaseException) -> MushraError:
    from ..audio.io import AudioError

    if isinstance(exc, AudioError):
        problem = re.sub(r"^cannot write audio \((.*)\)$", r"\1", exc.problem)
    else:
        problem = getattr(exc, "strerror", None) or str(exc)
    return MushraError(f"{out}: cannot write the test ({problem})")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _webmushra_config(
    test_id: str, name: str, trials: list[dict[str, Any]], audio_root: str
) -> dict[str, Any]:
    questionnaire = []
    for f in PARTICIPANT_FIELDS:
        if f["type"] == "choice":
            questionnaire.append(
                {
                    "type": "likert",
                    "name": f["name"],
                    "label": f["label"],
                    "response": [{"value": o, "label": o} for o in f["options"]],
                }
            )
        else:
            questionnaire.append(
                {"type": "text", "label": f["label"], "name": f["name"], "optional": bool(f["optional"])}
            )
    pages: list[Any] = [
        {"type": "generic", "id": "intro", "name": name, "content": INSTRUCTIONS},
        {
            "type": "volume",
            "id": "volume",
            "name": "Volume",
            "content": "Set a comfortable listening level with this sample, then keep it for the whole test.",
            "stimulus": f"{audio_root}/{trials[0]['id']}/{HIDDEN_REFERENCE}.wav",
            "defaultVolume": 0.5,
        },
    ]
    mushra_pages: list[Any] = ["random"]
    for t in trials:
        stimuli = {
            c["stimulus"]: f"{audio_root}/{t['id']}/{c['stimulus']}.wav"
            for c in t["conditions"]
            if c["stimulus"] != HIDDEN_REFERENCE
        }
        mushra_pages.append(
            {
                "type": "mushra",
                "id": t["id"],
                "name": "MUSHRA",
                "content": INSTRUCTIONS,
                "showWaveform": True,
                "enableLooping": True,
                "strict": True,
                "randomize": True,
                "showConditionNames": False,
                "reference": f"{audio_root}/{t['id']}/{HIDDEN_REFERENCE}.wav",
                "createAnchor35": False,
                "createAnchor70": False,
                "stimuli": stimuli,
            }
        )
    pages.append(mushra_pages)
    pages.append(
        {
            "type": "finish",
            "name": "Thank you",
            "content": "Thank you for taking part! Press send to store your ratings.",
            "showResults": False,
            "writeResults": True,
            "questionnaire": questionnaire,
        }
    )
    return {
        "testname": name,
        "testId": test_id,
        "bufferSize": 2048,
        "stopOnErrors": True,
        "showButtonPreviousPage": True,
        "remoteService": "service/write.php",
        "pages": pages,
    }


def build_test(
    ref_dir: str | os.PathLike,
    systems: list[tuple[str, str | os.PathLike]],
    out: str | os.PathLike,
    name: str | None = None,
    anchors: list[str] | tuple[str, ...] = ("lp35", "lp7"),
    reference: str = "original",
    resynth_dir: str | os.PathLike | None = None,
    seed: int = 0,
    max_trials: int | None = None,
    sample_rate: int | None = None,
    max_seconds: float | None = None,
    loudness: str = "bs1770",
    target_loudness: float | None = None,
    noise_snr_db: float = 0.0,
    fade_ms: float = 10.0,
    force: bool = False,
) -> BuildResult:
    """Build a MUSHRA test in ``out`` (see the module docstring). Raises :class:`MushraError` or
    :class:`~sqcodec.audio.AudioError` (one line naming the file) on bad input, leaving nothing behind."""
    from .. import __version__
    from ..audio import audio_info, load_mono, write_audio

    ref_dir, out = Path(ref_dir), Path(out)
    test_id = name if name is not None else out.resolve().name
    if not _NAME_RE.match(test_id or ""):
        raise MushraError(f"--name {test_id!r}: use letters, digits, '_', '-' or '.'")
    if not systems:
        raise MushraError("give at least one system folder")
    names = [n for n, _ in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MushraError(f"system name {dup[0]!r} given twice (name them with name=path)")
    if reference not in ("original", "resynth"):
        raise MushraError(f"--reference {reference}: use 'original' or 'resynth'")
    if reference == "resynth" and resynth_dir is None:
        raise MushraError("--reference resynth needs --resynth-dir")
    if loudness not in dsp.LOUDNESS_METHODS:
        raise MushraError(f"--loudness {loudness}: use one of {', '.join(dsp.LOUDNESS_METHODS)}")
    for a in anchors:
        if a not in ANCHORS:
            raise MushraError(f"unknown anchor {a!r} (known: {', '.join(ANCHORS)})")
    if max_trials is not None and max_trials < 1:
        raise MushraError(f"--max-trials {max_trials}: must be at least 1")
    if max_seconds is not None and max_seconds <= 0:
        raise MushraError(f"--max-seconds {max_seconds}: must be positive")
    if sample_rate is not None and sample_rate < 8000:
        raise MushraError(f"--sample-rate {sample_rate}: must be at least 8000")
    if out.exists() and not force:
        raise MushraError(f"{out}: already exists (use --force to replace it)")

    ref_files = list_audio(ref_dir)
    if not ref_files:
        raise MushraError(f"{ref_dir}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    sources: dict[str, dict[str, Path]] = {}
    if reference == "resynth":
        rdir = Path(resynth_dir)
        sources[HIDDEN_REFERENCE] = _match(ref_files, rdir, list_audio(rdir), "the --resynth-dir folder")
    else:
        sources[HIDDEN_REFERENCE] = dict(ref_files)
    for sys_name, folder in systems:
        folder = Path(folder)
        sources[sys_name] = _match(ref_files, folder, list_audio(folder), f"system {sys_name!r}")

    rng = np.random.default_rng(seed)
    keys = sorted(ref_files)
    if max_trials is not None and max_trials < len(keys):
        keys = sorted(keys[i] for i in rng.choice(len(keys), size=max_trials, replace=False))
    order = rng.permutation(len(keys))
    keys = [keys[i] for i in order]

    if sample_rate is None:
        sample_rate = max(audio_info(sources[HIDDEN_REFERENCE][k]).sample_rate for k in keys)
    sr = int(sample_rate)
    anchor_names = [ANCHORS[a][0] for a in anchors]
    for a in anchors:
        cutoff = ANCHORS[a][1]
        if cutoff is not None and cutoff * dsp.LOWPASS_STOP_RATIO >= sr / 2:
            raise MushraError(
                f"--anchors {a}: a {cutoff / 1000:g} kHz low-pass anchor needs a sample rate above "
                f"{2 * cutoff * dsp.LOWPASS_STOP_RATIO / 1000:g} kHz (stimuli are at {sr} Hz; "
                "set --sample-rate)"
            )

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    except OSError as exc:
        raise _output_error(out, exc) from None
    notes: list[str] = []
    width = max(2, len(str(len(keys))))
    results_id = sanitize_test_id(test_id)
    audio_root = f"configs/resources/audio/{results_id}"
    try:
        trials = []
        for index, key in enumerate(keys):
            trial_id = f"trial{index + 1:0{width}d}"
            waves: dict[str, np.ndarray] = {}
            paths: dict[str, Path] = {}
            for cond, files in sources.items():
                path = files[key]
                wave, info = load_mono(path, sr)
                for note in info.notes:
                    notes.append(f"{path}: {note}")
                waves[cond], paths[cond] = wave.astype(np.float64), path
            lengths = {c: w.size for c, w in waves.items()}
            n = min(lengths.values())
            if max_seconds is not None:
                n = min(n, int(round(max_seconds * sr)))
            short = min(lengths, key=lengths.get)
            gap = max(lengths.values()) - lengths[short]
            if gap > sr and (max_seconds is None or lengths[short] < max_seconds * sr):
                notes.append(
                    f"{paths[short]}: {gap / sr:.2f} s shorter than the longest stimulus of {key}; "
                    "the whole trial is cropped to it"
                )
            if n < int(0.1 * sr):
                raise MushraError(f"{paths[short]}: too short for a trial ({n} samples at {sr} Hz)")
            for c in waves:
                waves[c] = dsp.fade(waves[c][:n], sr, fade_ms / 1000.0, fade_ms / 1000.0)
            ref = waves[HIDDEN_REFERENCE]
            for a, cname in zip(anchors, anchor_names, strict=True):
                cutoff = ANCHORS[a][1]
                if cutoff is None:
                    noise_rng = np.random.default_rng([seed, 1, index])
                    waves[cname] = dsp.noise_anchor(ref, noise_snr_db, noise_rng)
                else:
                    waves[cname] = dsp.lowpass(ref, sr, cutoff)

            ref_level = dsp.loudness(ref, sr, loudness)
            if not np.isfinite(ref_level):
                raise MushraError(
                    f"{paths[HIDDEN_REFERENCE]}: the reference is silent; cannot match loudness to it"
                )
            target = ref_level if target_loudness is None else float(target_loudness)
            levels, gains = {}, {}
            for c, w in waves.items():
                levels[c] = dsp.loudness(w, sr, loudness)
                if np.isfinite(levels[c]):
                    gains[c] = target - levels[c]
                else:
                    gains[c] = 0.0
                    notes.append(
                        f"{paths.get(c, paths[HIDDEN_REFERENCE])}: {c} is silent after cropping; "
                        "not loudness-matched"
                    )
            peak = max(float(np.max(np.abs(w))) * 10.0 ** (gains[c] / 20.0) for c, w in waves.items())
            if peak > PEAK_CEILING:
                common = 20.0 * np.log10(PEAK_CEILING / peak)
                gains = {c: g + common for c, g in gains.items()}
                notes.append(f"{key}: all stimuli lowered by {-common:.2f} dB to keep peaks below -1 dBFS")

            conds = [HIDDEN_REFERENCE, *(n_ for n_, _ in systems), *anchor_names]
            perm = rng.permutation(len(conds))
            tdir = tmp / "stimuli" / trial_id
            wdir = tmp / "webmushra" / audio_root / trial_id
            tdir.mkdir(parents=True)
            conditions = []
            for pos, ci in enumerate(perm):
                c = conds[ci]
                cid = f"c{pos + 1}"
                f = tdir / f"{cid}.wav"
                write_audio(f, (waves[c] * 10.0 ** (gains[c] / 20.0)).astype(np.float32), sr)
                _link_or_copy(f, wdir / f"{c}.wav")
                conditions.append(
                    {
                        "id": cid,
                        "label": chr(ord("A") + pos) if pos < 26 else f"Z{pos - 25}",
                        "stimulus": c,
                        "file": f"stimuli/{trial_id}/{cid}.wav",
                        "webmushra_file": f"webmushra/{audio_root}/{trial_id}/{c}.wav",
                        "source": str(paths[c]) if c in paths else f"{c} of {paths[HIDDEN_REFERENCE]}",
                        "loudness_before": round(float(levels[c]), 3) if np.isfinite(levels[c]) else None,
                        "gain_db": round(float(gains[c]), 3),
                    }
                )
                if c == HIDDEN_REFERENCE:
                    _link_or_copy(f, tdir / "ref.wav")
            trials.append(
                {
                    "id": trial_id,
                    "item": key,
                    "num_samples": int(n),
                    "duration_s": n / sr,
                    "reference": f"stimuli/{trial_id}/ref.wav",
                    "conditions": conditions,
                }
            )

        test = {
            "format": TEST_FORMAT,
            "version": 1,
            "test_id": test_id,
            "name": test_id,
            "created_by": f"sqcodec {__version__}",
            "instructions": INSTRUCTIONS,
            "seed": seed,
            "sample_rate": sr,
            "subtype": "PCM_16",
            "loudness": {
                "method": loudness,
                "unit": "LUFS" if loudness == "bs1770" else "dBFS",
                "target": target_loudness,
                "peak_ceiling_dbfs": -1.0,
            },
            "fade_ms": fade_ms,
            "max_seconds": max_seconds,
            "anchors": {ANCHORS[a][0]: a for a in anchors},
            "noise_snr_db": noise_snr_db if "noise" in anchors else None,
            "reference_kind": reference,
            "reference_dir": str(ref_dir.resolve()),
            "resynth_dir": str(Path(resynth_dir).resolve()) if resynth_dir is not None else None,
            "systems": [{"name": n_, "dir": str(Path(d).resolve())} for n_, d in systems],
            "participant_fields": PARTICIPANT_FIELDS,
            "require_playback": True,
            "results_csv": f"results/{results_id}/mushra.csv",
            "trials": trials,
            "notes": notes,
        }
        (tmp / "test.json").write_text(json.dumps(test, indent=1) + "\n", encoding="utf-8")
        from .page import INDEX_HTML

        (tmp / "index.html").write_text(INDEX_HTML, encoding="utf-8")
        import yaml

        cfg = _webmushra_config(test_id, test_id, trials, audio_root)
        cfg_path = tmp / "webmushra" / "configs" / f"{results_id}.yaml"
        cfg_path.write_text(
            yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8"
        )
        (tmp / "webmushra" / "README.txt").write_text(
            "Copy the configs/ folder of this directory into a webMUSHRA checkout, then open\n"
            f"http://<server>/<webMUSHRA>/?config={results_id}.yaml\n"
            f"Results are written by webMUSHRA to results/{results_id}/mushra.csv.\n",
            encoding="utf-8",
        )
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        if _is_output_error(exc, tmp, out):
            raise _output_error(out, exc) from None
        raise
    conditions = [HIDDEN_REFERENCE, *names, *anchor_names]
    return BuildResult(
        out, test_id, len(keys), conditions, sr, out / "webmushra" / "configs" / f"{results_id}.yaml", notes
    )
