"""``sqcodec mushra build`` on real speech: trials, anchors, lengths, loudness, webMUSHRA config, bad
input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import yaml
from helpers import run_cli
from scipy import signal

from sqcodec.mushra import dsp

SPEAKER = "speech/librispeech/test-other/2033"
ITEMS = ["2033-164914-0000", "2033-164914-0001", "2033-164914-0002"]
SYSTEMS = ["lp4k", "noisy"]
ANCHOR_NAMES = ["anchor35", "anchor70", "anchor_noise"]

# ITU-R BS.1770-4 Tables 1 and 2: the K-weighting biquads at 48 kHz (b, a)
K48 = [
    ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585]),
    ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621]),
]


def run_mushra(*args) -> tuple[int, str, str]:
    """``sqcodec mushra <args>`` on the real app."""
    return run_cli("mushra", *args)


def lufs_48k(x: np.ndarray, sr: int) -> float:
    """Independent BS.1770 integrated loudness: resample to 48 kHz, the tabulated biquads, gating."""
    y = soxr.resample(np.asarray(x, dtype=np.float64), sr, 48000)
    for b, a in K48:
        y = signal.lfilter(b, a, y)
    z = np.array([np.mean(y[i : i + 19200] ** 2) for i in range(0, y.size - 19200 + 1, 4800)])
    z = z[-0.691 + 10 * np.log10(z) > -70]
    rel = -0.691 + 10 * np.log10(z.mean()) - 10
    z = z[-0.691 + 10 * np.log10(z) > rel]
    return -0.691 + 10 * np.log10(z.mean())


def energy_above(x: np.ndarray, sr: int, hz: float) -> float:
    """Fraction of the (Hann-windowed) energy above ``hz``."""
    p = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float(p[f > hz].sum() / p.sum())


@pytest.fixture(scope="module")
def speech(realaudio: Path, tmp_path_factory) -> dict[str, Path]:
    """A reference folder of three real LibriSpeech utterances (symlinks, FLAC) and two systems made from
    them: a 4 kHz low-pass (WAV, 10 ms shorter) and a noisy one (10 dB SNR, 22.05 kHz, stereo)."""
    root = tmp_path_factory.mktemp("speech")
    dirs = {"ref": root / "ref", "lp4k": root / "lp4k", "noisy": root / "noisy"}
    rng = np.random.default_rng(0)
    sos = signal.butter(8, 4000, fs=16000, output="sos")
    for item in ITEMS:
        src = realaudio / SPEAKER / f"{item}.flac"
        for d in dirs.values():
            (d / "2033").mkdir(parents=True, exist_ok=True)
        (dirs["ref"] / "2033" / f"{item}.flac").symlink_to(src)
        x, sr = sf.read(src)
        assert sr == 16000
        sf.write(
            dirs["lp4k"] / "2033" / f"{item}.wav", signal.sosfiltfilt(sos, x)[:-160], sr, subtype="PCM_16"
        )
        noisy = x + rng.standard_normal(x.size) * np.sqrt(np.mean(x**2) / 10)
        stereo = soxr.resample(np.stack([noisy, noisy], axis=1), sr, 22050)
        sf.write(dirs["noisy"] / "2033" / f"{item}.wav", np.clip(stereo, -1, 1), 22050, subtype="PCM_16")
    return dirs


@pytest.fixture(scope="module")
def built(speech: dict[str, Path], tmp_path_factory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("built") / "codec_test"
    code, stdout, stderr = run_mushra(
        "build", speech["ref"], speech["lp4k"], f"noisy={speech['noisy']}", "--out", out,
        "--anchors", "lp35,lp7,noise", "--seed", 7,
    )  # fmt: skip
    assert code == 0, stderr
    return out, json.loads((out / "test.json").read_text()), stdout + stderr


def test_k_weighting_is_the_bs1770_filter() -> None:
    sos = dsp.k_weighting(48000)
    for (b, a), section in zip(K48, sos, strict=True):
        np.testing.assert_allclose(section[:3], b, rtol=0, atol=1e-8)
        np.testing.assert_allclose(section[3:], a, rtol=0, atol=1e-8)
    # BS.1770: a full-scale 997 Hz sine in one channel reads -3.01 LKFS, at any sample rate
    for sr in (48000, 16000, 22050):
        t = np.arange(5 * sr) / sr
        assert dsp.loudness_bs1770(np.sin(2 * np.pi * 997 * t), sr) == pytest.approx(-3.01, abs=0.06)
        assert dsp.loudness_bs1770(0.1 * np.sin(2 * np.pi * 997 * t), sr) == pytest.approx(-23.01, abs=0.06)


def test_every_trial_holds_reference_systems_and_anchors(built) -> None:
    out, test, log = built
    assert "3 trials x 6 conditions" in log
    assert len(test["trials"]) == len(ITEMS)
    assert sorted(t["item"] for t in test["trials"]) == [f"2033/{i}" for i in ITEMS]
    for trial in test["trials"]:
        names = [c["stimulus"] for c in trial["conditions"]]
        assert sorted(names) == sorted(["reference", *SYSTEMS, *ANCHOR_NAMES])
        assert [c["id"] for c in trial["conditions"]] == [f"c{i}" for i in range(1, 7)]
        assert [c["label"] for c in trial["conditions"]] == list("ABCDEF")
        # the open reference and the hidden one are the same samples
        hidden = next(c for c in trial["conditions"] if c["stimulus"] == "reference")
        assert (out / trial["reference"]).read_bytes() == (out / hidden["file"]).read_bytes()


def test_stimuli_share_rate_length_and_format(built, speech) -> None:
    out, test, _ = built
    for trial in test["trials"]:
        item = trial["item"]
        ref_len = sf.info(speech["ref"] / f"{item}.flac").frames
        # the 4 kHz system is 160 samples shorter: the whole trial is cropped to it
        assert trial["num_samples"] == ref_len - 160
        for c in trial["conditions"]:
            info = sf.info(out / c["file"])
            assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
            assert info.frames == trial["num_samples"]


def test_hidden_reference_is_the_original(built, speech) -> None:
    out, test, _ = built
    for trial in test["trials"]:
        x, _ = sf.read(speech["ref"] / f"{trial['item']}.flac")
        hidden = next(c for c in trial["conditions"] if c["stimulus"] == "reference")
        y, _ = sf.read(out / hidden["file"])
        mid = slice(400, y.size - 400)  # away from the 10 ms fades
        assert np.corrcoef(x[: y.size][mid], y[mid])[0, 1] > 0.9999


def test_low_pass_anchors_are_band_limited(built) -> None:
    out, test, _ = built
    for trial in test["trials"]:
        files = {c["stimulus"]: out / c["file"] for c in trial["conditions"]}
        ref, sr = sf.read(files["reference"])
        a35, _ = sf.read(files["anchor35"])
        a70, _ = sf.read(files["anchor70"])
        assert energy_above(ref, sr, 3700) > 1e-3  # real speech has energy there ...
        assert energy_above(a35, sr, 3700) < 1e-7  # ... the 3.5 kHz anchor almost none (< -70 dB)
        assert energy_above(a70, sr, 7400) < 1e-7
        assert energy_above(a70, sr, 3700) > 1e-3
        # and below the cut-off they are the reference (zero phase: no delay)
        sos = signal.butter(10, 3000, fs=sr, output="sos")
        r_low, a_low = signal.sosfiltfilt(sos, ref), signal.sosfiltfilt(sos, a35)
        assert np.corrcoef(r_low, a_low)[0, 1] > 0.999


def test_noise_anchor_is_reference_plus_white_noise_at_0_db(built) -> None:
    out, test, _ = built
    for trial in test["trials"]:
        files = {c["stimulus"]: out / c["file"] for c in trial["conditions"]}
        ref, sr = sf.read(files["reference"])
        noisy, _ = sf.read(files["anchor_noise"])
        g = float(ref @ noisy / (ref @ ref))
        resid = noisy - g * ref
        snr = 10 * np.log10(np.sum((g * ref) ** 2) / np.sum(resid**2))
        assert snr == pytest.approx(0.0, abs=0.5)
        spectrum = np.abs(np.fft.rfft(resid)) ** 2
        bands = [b.mean() for b in np.array_split(spectrum[10:], 8)]
        assert max(bands) / min(bands) < 1.3  # white


def test_stimuli_are_loudness_matched(built) -> None:
    out, test, _ = built
    for trial in test["trials"]:
        levels = {}
        for c in trial["conditions"]:
            x, sr = sf.read(out / c["file"])
            levels[c["stimulus"]] = lufs_48k(x, sr)
        for name, level in levels.items():
            assert level == pytest.approx(levels["reference"], abs=0.3), (trial["id"], name, levels)
        assert test["loudness"]["method"] == "bs1770"


def test_webmushra_config_parses_and_lists_existing_files(built) -> None:
    out, test, _ = built
    cfg_path = out / "webmushra" / "configs" / "codec_test.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    root = out / "webmushra"
    assert cfg["testId"] == "codec_test" and cfg["remoteService"] == "service/write.php"
    assert cfg["stopOnErrors"] is True and cfg["bufferSize"] == 2048
    pages = cfg["pages"]
    assert pages[0]["type"] == "generic"
    assert pages[1]["type"] == "volume" and (root / pages[1]["stimulus"]).is_file()
    group = pages[2]
    assert group[0] == "random" and len(group) == 1 + len(ITEMS)
    by_id = {t["id"]: t for t in test["trials"]}
    for page in group[1:]:
        assert page["type"] == "mushra"
        assert page["createAnchor35"] is False and page["createAnchor70"] is False
        assert sorted(page["stimuli"]) == sorted([*SYSTEMS, *ANCHOR_NAMES])
        ref = root / page["reference"]
        assert ref.is_file()
        built_files = {c["stimulus"]: out / c["file"] for c in by_id[page["id"]]["conditions"]}
        assert ref.read_bytes() == built_files["reference"].read_bytes()
        for name, rel in page["stimuli"].items():
            assert rel.startswith("configs/resources/audio/")
            assert (root / rel).read_bytes() == built_files[name].read_bytes()
    finish = pages[-1]
    assert finish["type"] == "finish" and finish["writeResults"] is True
    assert [q["name"] for q in finish["questionnaire"]] == ["alias", "experience"]


def _order(test: dict) -> list[tuple[str, list[str]]]:
    return [(t["item"], [c["stimulus"] for c in t["conditions"]]) for t in test["trials"]]


def test_randomisation_is_seeded(built, speech, tmp_path: Path) -> None:
    _, test, _ = built
    args = [speech["ref"], speech["lp4k"], f"noisy={speech['noisy']}", "--anchors", "lp35,lp7,noise"]
    assert run_mushra("build", *args, "--out", tmp_path / "same", "--seed", 7, "--max-seconds", 1)[0] == 0
    assert run_mushra("build", *args, "--out", tmp_path / "other", "--seed", 8, "--max-seconds", 1)[0] == 0
    same = json.loads((tmp_path / "same" / "test.json").read_text())
    other = json.loads((tmp_path / "other" / "test.json").read_text())
    assert _order(same) == _order(test)
    assert _order(other) != _order(test)
    assert all(t["num_samples"] == 16000 for t in same["trials"])  # --max-seconds 1
    # condition order is shuffled, not just rotated: the hidden reference is not always first
    assert {c[1].index("reference") for c in _order(test) + _order(other)} != {0}


def test_resynth_reference_and_max_trials(speech, tmp_path: Path) -> None:
    out = tmp_path / "resynth"
    code, _, err = run_mushra(
        "build", speech["ref"], f"noisy={speech['noisy']}", "--out", out, "--reference", "resynth",
        "--resynth-dir", speech["lp4k"], "--max-trials", 1, "--anchors", "none",
    )  # fmt: skip
    assert code == 0, err
    test = json.loads((out / "test.json").read_text())
    assert len(test["trials"]) == 1 and test["reference_kind"] == "resynth"
    trial = test["trials"][0]
    assert sorted(c["stimulus"] for c in trial["conditions"]) == ["noisy", "reference"]
    hidden = next(c for c in trial["conditions"] if c["stimulus"] == "reference")
    y, _ = sf.read(out / hidden["file"])
    assert energy_above(y, 16000, 4300) < 1e-4  # the hidden reference is the 4 kHz "resynthesis"


def _one_error_line(code: int, stdout: str, stderr: str) -> str:
    assert code == 1
    lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sqcodec: error:"), lines
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_missing_system_file_fails_naming_it_and_leaves_nothing(speech, tmp_path: Path) -> None:
    sysdir = tmp_path / "partial"
    (sysdir / "2033").mkdir(parents=True)
    for item in ITEMS[:2]:
        (sysdir / "2033" / f"{item}.wav").symlink_to(speech["lp4k"] / "2033" / f"{item}.wav")
    outs = tmp_path / "outs"
    outs.mkdir()
    line = _one_error_line(*run_mushra("build", speech["ref"], sysdir, "--out", outs / "t"))
    assert str(sysdir / "2033" / ITEMS[2]) in line and "missing" in line
    assert _leftovers(outs) == []


def test_unreadable_wav_fails_naming_it_and_leaves_nothing(built, speech, tmp_path: Path) -> None:
    # break the item built last with this seed, so earlier trials are already written when it fails
    last = built[1]["trials"][-1]["item"]
    sysdir = tmp_path / "broken"
    (sysdir / "2033").mkdir(parents=True)
    for item in ITEMS:
        (sysdir / "2033" / f"{item}.wav").symlink_to(speech["lp4k"] / "2033" / f"{item}.wav")
    bad = sysdir / f"{last}.wav"
    bad.unlink()
    bad.write_bytes(b"RIFF this is not a wave file at all")
    outs = tmp_path / "outs"
    outs.mkdir()
    line = _one_error_line(*run_mushra("build", speech["ref"], sysdir, "--out", outs / "t", "--seed", 7))
    assert str(bad) in line
    assert _leftovers(outs) == []  # neither the test folder nor its half-built temporary folder


def test_silent_reference_fails_naming_it(tmp_path: Path) -> None:
    ref, sys_ = tmp_path / "ref", tmp_path / "sys"
    ref.mkdir()
    sys_.mkdir()
    sf.write(ref / "a.wav", np.zeros(16000), 16000)
    sf.write(sys_ / "a.wav", np.full(16000, 0.1), 16000)
    line = _one_error_line(*run_mushra("build", ref, sys_, "--out", tmp_path / "t"))
    assert str(ref / "a.wav") in line and "silent" in line
    assert _leftovers(tmp_path) == ["ref", "sys"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["reference=SYS"], "reserved"),
        (["SYS", "--anchors", "lp35,bogus"], "bogus"),
        (["SYS", "--sample-rate", 12000], "7 kHz low-pass anchor needs a sample rate above"),
        (["SYS", "--reference", "resynth"], "--resynth-dir"),
    ],
)
def test_bad_options_fail_in_one_line(speech, tmp_path: Path, extra: list, needle: str) -> None:
    extra = [str(speech["lp4k"]) if a == "SYS" else str(a).replace("SYS", str(speech["lp4k"])) for a in extra]
    line = _one_error_line(*run_mushra("build", speech["ref"], *extra, "--out", tmp_path / "t"))
    assert needle in line
    assert not (tmp_path / "t").exists()


def test_existing_output_needs_force(speech, tmp_path: Path) -> None:
    out = tmp_path / "t"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["build", speech["ref"], speech["lp4k"], "--out", out, "--max-trials", 1, "--max-seconds", 1]
    assert "already exists" in _one_error_line(*run_mushra(*args))
    assert (out / "keep.txt").exists()
    code, _, err = run_mushra(*args, "--force")
    assert code == 0, err
    assert not (out / "keep.txt").exists() and (out / "test.json").is_file()
    assert _leftovers(tmp_path) == ["t"]


def test_noise_anchor_snr_option(speech, tmp_path: Path) -> None:
    out = tmp_path / "t"
    args = ["build", speech["ref"], speech["lp4k"], "--out", out, "--anchors", "noise", "--noise-snr", 20]
    assert run_mushra(*args, "--max-trials", 1)[0] == 0
    trial = json.loads((out / "test.json").read_text())["trials"][0]
    files = {c["stimulus"]: out / c["file"] for c in trial["conditions"]}
    ref, _ = sf.read(files["reference"])
    noisy, _ = sf.read(files["anchor_noise"])
    g = float(ref @ noisy / (ref @ ref))
    snr = 10 * math.log10(np.sum((g * ref) ** 2) / np.sum((noisy - g * ref) ** 2))
    assert snr == pytest.approx(20.0, abs=0.5)
