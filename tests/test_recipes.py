"""Recipes: data prep on the real on-disk corpus layouts, Kaldi tables, the job runner, features and stats.

Corpora are rebuilt in ``tmp_path`` from the shared real recordings (``realaudio`` fixture) in the layouts
the corpora are distributed in. The full shell pipelines (``egs/<corpus>/run.sh --stage 0 --stop_stage 2``)
start several Python processes that each import torch, so all but the mini recipe are ``slow``.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import helpers
import numpy as np
import pytest
import soundfile as sf

from sqcodec import recipe_tools as rt

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "recipes" / "utils"


# ------------------------------------------------------------------------------------------ corpora
def _to_wav(src: Path, dst: Path) -> None:
    data, sr = sf.read(src, always_2d=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dst, data, sr, subtype="PCM_16")


def build_vctk080(realaudio: Path, root: Path) -> list[str]:
    """VCTK-Corpus/wav48/pXXX/pXXX_NNN.wav + txt/pXXX/pXXX_NNN.txt (15 speakers, 1 utterance each)."""
    utts = []
    for f in sorted((realaudio / "speech" / "vctk48k").glob("*/*.flac")):
        spk = f.parent.name
        _to_wav(f, root / "VCTK-Corpus" / "wav48" / spk / f"{f.stem}.wav")
        t = root / "VCTK-Corpus" / "txt" / spk / f"{f.stem}.txt"
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text(f"Text of {f.stem}.\n")
        utts.append(f.stem)
    return utts


def build_vctk092(realaudio: Path, root: Path) -> list[str]:
    """VCTK-Corpus-0.92/wav48_silence_trimmed/pXXX/pXXX_NNN_mic{1,2}.flac (mic2 must be ignored)."""
    utts = []
    for f in sorted((realaudio / "speech" / "vctk48k").glob("*/*.flac")):
        d = root / "VCTK-Corpus-0.92" / "wav48_silence_trimmed" / f.parent.name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f"{f.stem}_mic1.flac")
        shutil.copy(f, d / f"{f.stem}_mic2.flac")
        utts.append(f.stem)
    return utts


def build_zerospeech(realaudio: Path, root: Path) -> dict[str, list[str]]:
    """english/train/{voice,unit}/, english/train/parallel/voice/, english/test/ (.wav, 16 kHz)."""
    files = sorted((realaudio / "speech" / "zerospeech2019_english").glob("*.flac"))
    s_files = [f for f in files if f.name.startswith("S")]
    v_files = [f for f in files if f.name.startswith("V")]
    layout = {
        "train/voice": [f for f in v_files if f.name.startswith("V001")][:4]
        + [f for f in v_files if f.name.startswith("V002")][:4],
        "train/unit": s_files[:5],
        "train/parallel/voice": [f for f in v_files if f.name.startswith("V001")][4:]
        + [f for f in v_files if f.name.startswith("V002")][4:],
        "test": s_files[5:],
    }
    for sub, fs in layout.items():
        for f in fs:
            _to_wav(f, root / "english" / sub / f"{f.stem}.wav")
    return {k: [f.stem for f in v] for k, v in layout.items()}


def build_urbansound(realaudio: Path, root: Path) -> dict[int, list[str]]:
    """UrbanSound8K/audio/foldN/*.wav + metadata/UrbanSound8K.csv, folds re-assigned (1..10, 1, 2)."""
    base = realaudio / "env" / "urbansound8k"
    classes = sorted(p for p in base.iterdir() if p.is_dir())
    picks: list[Path] = []
    for i in range(2):  # two clips per class, alternating classes
        for c in classes:
            fs = sorted(c.glob("*.flac"))
            if len(fs) > i:
                picks.append(fs[i])
    picks = picks[:12]
    with open(base / "UrbanSound8K.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        rows = {r["slice_file_name"]: r for r in reader}
    folds: dict[int, list[str]] = {}
    out_rows = []
    for i, p in enumerate(picks):
        fold = i % 10 + 1
        name = f"{p.stem}.wav"
        row = dict(rows[name])
        row["fold"] = str(fold)
        out_rows.append(row)
        _to_wav(p, root / "UrbanSound8K" / "audio" / f"fold{fold}" / name)
        folds.setdefault(fold, []).append(p.stem)
    meta = root / "UrbanSound8K" / "metadata" / "UrbanSound8K.csv"
    meta.parent.mkdir(parents=True, exist_ok=True)
    with open(meta, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(out_rows)
    return folds


def build_mini_librispeech(
    realaudio: Path, root: Path, n_train: int = 5, n_dev: int = 3
) -> dict[str, list[str]]:
    """LibriSpeech/{train-clean-5,dev-clean-2}/SPK/CH/*.flac from a few shared LibriSpeech utterances."""
    out: dict[str, list[str]] = {"train": [], "dev": []}
    for src, dst, key, n in (
        ("train-clean-100", "train-clean-5", "train", n_train),
        ("test-other", "dev-clean-2", "dev", n_dev),
    ):
        for f in sorted((realaudio / "speech" / "librispeech" / src).glob("*/*.flac"))[:n]:
            spk, ch = f.stem.split("-")[:2]
            d = root / "LibriSpeech" / dst / spk / ch
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, d / f.name)
            out[key].append(f.stem)
    return out


# ------------------------------------------------------------------------------------------ helpers
def table(path: Path) -> dict[str, str]:
    return dict(rt.read_table(path))


def keys(path: Path) -> list[str]:
    return [k for k, _ in rt.read_table(path)]


def check_data_dir(d: Path) -> None:
    assert rt.validate_data_dir(d) == []
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        k = keys(d / name)
        assert k == sorted(k, key=lambda s: s.encode()), name
    assert keys(d / "wav.scp") == keys(d / "utt2spk")
    inv: dict[str, list[str]] = {}
    for u, s in table(d / "utt2spk").items():
        inv.setdefault(s, []).append(u)
    assert {s: v.split() for s, v in table(d / "spk2utt").items()} == inv


def run_recipe(corpus: str, work: Path, db_root: Path, *extra: str, check: bool = True):
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    cmd = ["bash", str(REPO / "egs" / corpus / "run.sh"), "--db_root", str(db_root), "--nj", "2", *extra]
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def ark_feats(scp: Path) -> dict[str, np.ndarray]:
    import kaldiio

    return {k: np.asarray(v) for k, v in kaldiio.load_scp(str(scp)).items()}


# ------------------------------------------------------------------------------------------ data prep
def test_prep_vctk080_split(realaudio, tmp_path):
    utts = build_vctk080(realaudio, tmp_path / "db")
    res = rt.prep_vctk(tmp_path / "db", tmp_path / "data")
    assert res == {"version": "0.80", "train": 13, "test": 2}  # round(0.1 * 15) = 2
    for s in ("train", "test"):
        check_data_dir(tmp_path / "data" / s)
    train, test = keys(tmp_path / "data/train/wav.scp"), keys(tmp_path / "data/test/wav.scp")
    assert sorted(train + test) == sorted(utts) and not set(train) & set(test)
    assert table(tmp_path / "data/train/utt2spk")[train[0]] == train[0].split("_")[0]
    assert table(tmp_path / "data/test/text")[test[0]] == f"Text of {test[0]}."
    # the split depends only on the utterance set and the seed
    rt.prep_vctk(tmp_path / "db", tmp_path / "data2")
    assert keys(tmp_path / "data2/test/wav.scp") == test
    rt.prep_vctk(tmp_path / "db", tmp_path / "data3", seed=1)
    assert sorted(keys(tmp_path / "data3/train/wav.scp") + keys(tmp_path / "data3/test/wav.scp")) == sorted(
        utts
    )


def test_prep_vctk092_mic1(realaudio, tmp_path):
    utts = build_vctk092(realaudio, tmp_path / "db")
    res = rt.prep_vctk(tmp_path / "db", tmp_path / "data")
    assert res["version"] == "0.92" and res["train"] + res["test"] == len(utts)
    wav = {**table(tmp_path / "data/train/wav.scp"), **table(tmp_path / "data/test/wav.scp")}
    assert sorted(wav) == sorted(utts)  # ids without the _mic1 suffix
    assert all(p.endswith("_mic1.flac") for p in wav.values())
    for s in ("train", "test"):
        check_data_dir(tmp_path / "data" / s)


def test_prep_vctk_bad_root(tmp_path):
    with pytest.raises(rt.RecipeError, match="no VCTK wav48"):
        rt.prep_vctk(tmp_path, tmp_path / "data")


def test_prep_zerospeech_sets(realaudio, tmp_path):
    layout = build_zerospeech(realaudio, tmp_path / "db")
    res = rt.prep_zerospeech(tmp_path / "db", tmp_path / "data")
    d = tmp_path / "data"
    assert sorted(keys(d / "train/wav.scp")) == sorted(layout["train/voice"] + layout["train/unit"])
    assert keys(d / "test/wav.scp") == sorted(layout["train/parallel/voice"])
    assert keys(d / "abx/wav.scp") == sorted(layout["test"])
    assert res == {"train": 13, "test": 4, "abx": 3}
    for s in ("train", "test", "abx"):
        check_data_dir(d / s)
    u2s = table(d / "train/utt2spk")
    assert {u2s[u] for u in layout["train/voice"]} == {"V001", "V002"}
    assert all(u2s[u] == u[:4] and u.startswith("S") for u in layout["train/unit"])


def test_prep_urbansound_folds(realaudio, tmp_path):
    folds = build_urbansound(realaudio, tmp_path / "db")
    rt.prep_urbansound(tmp_path / "db", tmp_path / "data")
    d = tmp_path / "data"
    want = {
        "train": sorted(u for f in range(1, 9) for u in folds.get(f, [])),
        "valid": sorted(folds[9]),
        "test": sorted(folds[10]),
    }
    for s, utts in want.items():
        check_data_dir(d / s)
        assert keys(d / s / "wav.scp") == utts, s
        assert all(
            f"/fold{10 if s == 'test' else 9 if s == 'valid' else ''}" in p
            for p in table(d / s / "wav.scp").values()
        )
    assert len(want["train"]) == 10
    u2s = table(d / "train/utt2spk")
    assert all(u2s[u] == u.split("-")[0] for u in u2s)  # speaker = Freesound id
    assert set(table(d / "train/utt2category").values()) <= {
        p.name for p in (realaudio / "env/urbansound8k").iterdir()
    }
    # a CSV row whose file is missing is an error naming it (or skipped on request)
    missing = next(iter((tmp_path / "db/UrbanSound8K/audio/fold9").glob("*.wav")))
    missing.unlink()
    with pytest.raises(rt.RecipeError, match=missing.name):
        rt.prep_urbansound(tmp_path / "db", tmp_path / "data")


def test_prep_librispeech_and_any_folder(realaudio, tmp_path):
    sets = build_mini_librispeech(realaudio, tmp_path / "db")
    rt.prep_audio_dir(tmp_path / "db", tmp_path / "data")
    for s in ("train", "dev"):
        check_data_dir(tmp_path / "data" / s)
        assert keys(tmp_path / "data" / s / "wav.scp") == sorted(sets[s])
    # any folder of audio: speaker = first sub-folder, 90/10 split
    rt.prep_audio_dir(realaudio / "speech" / "vctk16k", tmp_path / "any")
    tr, dv = keys(tmp_path / "any/train/wav.scp"), keys(tmp_path / "any/dev/wav.scp")
    assert len(dv) == round(0.1 * (len(tr) + len(dv))) and not set(tr) & set(dv)
    check_data_dir(tmp_path / "any/train")
    assert table(tmp_path / "any/train/utt2spk")[tr[0]] == tr[0].split("_")[0]


def test_validate_data_dir_finds_problems(tmp_path):
    d = tmp_path / "d"
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(100), 16000)
    rt.write_data_dir(d, {"s1_a": wav, "s1_b": wav, "s2_a": wav}, {"s1_a": "s1", "s1_b": "s1", "s2_a": "s2"})
    assert rt.validate_data_dir(d) == []
    (d / "spk2utt").write_text("s1 s1_a\ns2 s2_a\n")
    assert any("inverse" in p for p in rt.validate_data_dir(d))
    (d / "utt2spk").write_text("s2_a s2\ns1_a s1\n")
    assert any("not sorted" in p for p in rt.validate_data_dir(d))
    r = subprocess.run(["bash", str(UTILS / "validate_data_dir.sh"), str(d)], capture_output=True, text=True)
    assert r.returncode == 1 and "not sorted" in r.stderr
    # the shell inverse matches
    (d / "utt2spk").write_text("s1_a s1\ns1_b s1\ns2_a s2\n")
    r = subprocess.run(
        ["bash", str(UTILS / "utt2spk_to_spk2utt.sh"), str(d / "utt2spk")], capture_output=True, text=True
    )
    assert r.stdout == "s1 s1_a s1_b\ns2 s2_a\n"


def test_split_scp(tmp_path):
    src = tmp_path / "x.scp"
    src.write_text("".join(f"u{i:02d} v\n" for i in range(7)))
    outs = [tmp_path / f"x.{j}.scp" for j in (1, 2, 3)]
    rt.split_scp(src, outs)
    parts = [o.read_text().splitlines() for o in outs]
    assert [len(p) for p in parts] == [3, 2, 2] and sum(parts, []) == src.read_text().splitlines()
    with pytest.raises(rt.RecipeError, match="lower --nj"):
        rt.split_scp(src, [tmp_path / f"y.{j}" for j in range(8)])


# ------------------------------------------------------------------------------------------ runner
def test_run_local_substitutes_job_and_logs(tmp_path):
    r = subprocess.run(
        [
            str(UTILS / "run_local.sh"),
            "JOB=1:3",
            str(tmp_path / "log/x.JOB.log"),
            "echo",
            "job JOB",
            ">",
            str(tmp_path / "out.JOB"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        assert (tmp_path / f"out.{j}").read_text() == f"job {j}\n"
        log = (tmp_path / f"log/x.{j}.log").read_text()
        assert log.startswith(f"# echo job\\ {j}") and log.rstrip().endswith("# Accounting: status=0")


def test_run_local_failure_names_log(tmp_path):
    r = subprocess.run(
        [
            str(UTILS / "run_local.sh"),
            "--max-jobs-run",
            "2",
            "JOB=1:4",
            str(tmp_path / "log/t.JOB.log"),
            "test",
            "JOB",
            "-ne",
            "3",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert f"1 / 4 failed, log is in {tmp_path}/log/t.3.log" in r.stderr
    assert "status=1" in (tmp_path / "log/t.3.log").read_text()
    assert "status=0" in (tmp_path / "log/t.4.log").read_text()


def test_parse_options(tmp_path):
    script = tmp_path / "s.sh"
    script.write_text(
        f"stage=0\nstop_stage=9\nflag=false\nname=x\n. {UTILS}/parse_options.sh\n"
        'echo "$stage $stop_stage $flag $name $#"\n'
    )
    r = subprocess.run(
        ["bash", str(script), "--stage", "2", "--stop-stage=3", "--flag", "true", "--name", "a b", "p"],
        capture_output=True,
        text=True,
    )
    assert r.stdout == "2 3 true a b 1\n"
    r = subprocess.run(["bash", str(script), "--nope", "1"], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown option --nope" in r.stderr
    r = subprocess.run(["bash", str(script), "--flag", "yes"], capture_output=True, text=True)
    assert r.returncode == 1 and "true or false" in r.stderr


# ------------------------------------------------------------------------------------------ features
def test_features_stats_norm_in_process(realaudio, tmp_path):
    build_vctk080(realaudio, tmp_path / "db")
    rt.prep_vctk(tmp_path / "db", tmp_path / "data")
    out = tmp_path / "dump/train/raw/feats.1"
    n = rt.extract_feats(tmp_path / "data/train/wav.scp", "vctk", out)
    feats = ark_feats(tmp_path / "dump/train/raw/feats.1.scp")
    assert n == len(feats) == 13
    wavs = table(tmp_path / "data/train/wav.scp")
    for utt, mat in feats.items():
        n48 = sf.info(wavs[utt]).frames
        assert mat.shape == (round(n48 / 2) // 300 + 1, 80) and mat.dtype == np.float32  # 24 kHz, hop 300
    assert table(tmp_path / "dump/train/raw/feats.1.utt2num_frames") == {
        u: str(m.shape[0]) for u, m in feats.items()
    }
    rt.compute_stats(tmp_path / "dump/train/raw/feats.1.scp", tmp_path / "stats.json", "vctk")
    rt.normalize(tmp_path / "dump/train/raw/feats.1.scp", tmp_path / "stats.json", tmp_path / "norm/feats.1")
    allf = np.concatenate(list(ark_feats(tmp_path / "norm/feats.1.scp").values()))
    np.testing.assert_allclose(allf.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(allf.std(0), 1, atol=1e-3)


def test_extract_urbansound_shape(realaudio, tmp_path):
    build_urbansound(realaudio, tmp_path / "db")
    rt.prep_urbansound(tmp_path / "db", tmp_path / "data")
    out = tmp_path / "feats"
    rt.extract_feats(tmp_path / "data/valid/wav.scp", "urbansound", out)  # fold 9: 1 clip
    rt.extract_feats(tmp_path / "data/test/wav.scp", "urbansound", tmp_path / "feats10")
    for scp in (tmp_path / "feats.scp", tmp_path / "feats10.scp"):
        for mat in ark_feats(scp).values():
            assert mat.shape == (344, 80)


def test_extract_with_segments(realaudio, tmp_path):
    f = sorted((realaudio / "speech/librispeech/train-clean-100").glob("*/*.flac"))[0]
    (tmp_path / "wav.scp").write_text(f"rec1 {f}\n")
    (tmp_path / "segments").write_text("rec1-a rec1 0.0 1.0\nrec1-b rec1 1.0 2.5\n")
    rt.extract_feats(tmp_path / "wav.scp", "codec16k", tmp_path / "f", segments=tmp_path / "segments")
    shapes = {k: v.shape for k, v in ark_feats(tmp_path / "f.scp").items()}
    assert shapes == {"rec1-a": (16000 // 256 + 1, 80), "rec1-b": (24000 // 256 + 1, 80)}


# ------------------------------------------------------------------------------------------ recipes
def _check_dump(work: Path, sets: list[str], feat_type: str = "raw") -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for s in sets:
        d = work / "dump" / s / feat_type
        ids = keys(d / "feats.scp")
        assert ids == keys(work / "data" / s / "utt2spk")
        assert (d / "utt2spk").read_text() == (work / "data" / s / "utt2spk").read_text()
        out[s] = ark_feats(d / "feats.scp")
    return out


def _snapshot(work: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(work)): p.read_bytes()
        for p in sorted((work / "dump").rglob("*"))
        if p.is_file() and "log" not in p.parts
    } | {
        str(p.relative_to(work)): p.read_bytes()
        for p in sorted((work / "data").rglob("*"))
        if p.is_file() and "log" not in p.parts
    }


def test_recipe_mini_librispeech_stages_0_2(realaudio, tmp_path):
    sets = build_mini_librispeech(realaudio, tmp_path / "db")
    work = tmp_path / "work"
    work.mkdir()
    run_recipe("mini_librispeech", work, tmp_path / "db", "--stage", "0", "--stop_stage", "2")
    for s in ("train", "dev"):
        check_data_dir(work / "data" / s)
        assert keys(work / "data" / s / "wav.scp") == sorted(sets[s])
    feats = _check_dump(work, ["train", "dev"])
    wavs = table(work / "data/train/wav.scp")
    for utt, mat in feats["train"].items():
        assert mat.shape == (sf.info(wavs[utt]).frames // 256 + 1, 80)
    assert (work / "dump/train/raw/log/extract.1.log").is_file() and (
        work / "dump/train/raw/log/extract.2.log"
    ).is_file()
    assert (work / "dump/train/stats.json").is_file() and not (work / "dump/train/norm").exists()
    assert (
        not any((REPO / "egs/mini_librispeech").glob("data"))
        and not (REPO / "egs/mini_librispeech/dump").exists()
    )


def test_recipe_failing_job_stops_with_log(realaudio, tmp_path):
    build_mini_librispeech(realaudio, tmp_path / "db", n_train=3, n_dev=1)
    bad = sorted((tmp_path / "db/LibriSpeech/train-clean-5").rglob("*.flac"))[-1]
    bad.write_bytes(b"not audio at all")
    work = tmp_path / "work"
    rt.prep_audio_dir(tmp_path / "db", work / "data")
    r = run_recipe(
        "mini_librispeech", work, tmp_path / "db", "--stage", "1", "--stop_stage", "1", check=False
    )
    assert r.returncode != 0
    assert f"1 / 2 failed, log is in {'dump/train/raw/log/extract.2.log'}" in r.stderr
    log = (work / "dump/train/raw/log/extract.2.log").read_text()
    assert bad.name in log and "status=1" in log
    assert "status=0" in (work / "dump/train/raw/log/extract.1.log").read_text()
    assert not (work / "dump/train/raw/feats.scp").exists()  # no merged table after a failure


def test_recipe_stage5_without_vocoder_names_it(tmp_path):
    r = run_recipe("mini_librispeech", tmp_path, tmp_path, "--stage", "5", "--stop_stage", "5", check=False)
    assert r.returncode != 0 and "exp/hifigan_codec16k_v3/vocoder: not a vocoder folder" in r.stderr


@pytest.mark.slow
def test_recipe_vctk_stages_0_2_rerun_identical(realaudio, tmp_path):
    utts = build_vctk080(realaudio, tmp_path / "db")
    work = tmp_path / "work"
    work.mkdir()
    run_recipe("vctk", work, tmp_path / "db", "--stage", "0", "--stop_stage", "2")
    assert sorted(keys(work / "data/train/wav.scp") + keys(work / "data/test/wav.scp")) == sorted(utts)
    raw = _check_dump(work, ["train", "test"])
    norm = _check_dump(work, ["train", "test"], "norm")
    assert all(m.shape[1] == 80 for m in raw["train"].values())
    allf = np.concatenate(list(norm["train"].values()))
    np.testing.assert_allclose(allf.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(allf.std(0), 1, atol=1e-3)
    assert np.abs(np.concatenate(list(norm["test"].values())).mean()) < 1.0
    snap = _snapshot(work)
    run_recipe("vctk", work, tmp_path / "db", "--stage", "0", "--stop_stage", "2")
    assert _snapshot(work) == snap


@pytest.mark.slow
def test_recipe_zerospeech_stages_0_2(realaudio, tmp_path):
    layout = build_zerospeech(realaudio, tmp_path / "db")
    work = tmp_path / "work"
    work.mkdir()
    run_recipe("zerospeech2019", work, tmp_path / "db", "--stage", "0", "--stop_stage", "2")
    feats = _check_dump(work, ["train", "test", "abx"])
    assert sorted(feats["abx"]) == sorted(layout["test"])
    wavs = table(work / "data/train/wav.scp")
    for utt, mat in feats["train"].items():
        assert mat.shape == (sf.info(wavs[utt]).frames // 160 + 1, 80)
        assert mat.max() - mat.min() <= 1.0 + 1e-5  # dB/80 + 1, clipped 80 dB below the maximum
    assert not (work / "dump/train/norm").exists()


@pytest.mark.slow
def test_recipe_urbansound_stages_0_2(realaudio, tmp_path):
    folds = build_urbansound(realaudio, tmp_path / "db")
    work = tmp_path / "work"
    work.mkdir()
    run_recipe("urbansound8k", work, tmp_path / "db", "--stage", "0", "--stop_stage", "2")
    feats = _check_dump(work, ["train", "valid", "test"])
    assert sorted(feats["test"]) == sorted(folds[10])
    assert all(m.shape == (344, 80) for s in feats.values() for m in s.values())
    assert not (work / "dump/train/norm").exists()
    # the standardise option
    run_recipe(
        "urbansound8k", work, tmp_path / "db", "--stage", "2", "--stop_stage", "2", "--norm", "standardise"
    )
    norm = _check_dump(work, ["train"], "norm")
    np.testing.assert_allclose(np.concatenate(list(norm["train"].values())).mean(0), 0, atol=1e-4)


def test_recipe_tools_cli_errors(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "sqcodec.recipe_tools", "prep-zerospeech", "--db_root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.startswith("error: ") and str(tmp_path) in r.stderr


# ------------------------------------------------------------------------------------------ stages 4-6
def test_wav_list(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    for f in (a, b):
        sf.write(f, np.zeros(1600), 16000)
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u1 {a}\nu2 {b}\nu3 {a}\n")  # u3: a second utterance of the same recording
    assert rt.wav_list(scp, tmp_path / "list.txt") == 2
    assert (tmp_path / "list.txt").read_text() == f"{a}\n{b}\n"
    assert rt.wav_list(scp, tmp_path / "one.txt", max_files=1) == 1
    # a piped entry: one line naming wav.scp, through the CLI too
    scp.write_text(f"u1 {a}\nu2 sox {b} -t wav - |\n")
    with pytest.raises(rt.RecipeError, match=r"wav\.scp: u2: piped entry"):
        rt.wav_list(scp, tmp_path / "list.txt")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqcodec.recipe_tools",
            "wav-list",
            "--wav_scp",
            str(scp),
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.startswith(f"error: {scp}: u2: piped entry")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    scp.write_text(f"u1 {tmp_path / 'missing.wav'}\n")
    with pytest.raises(rt.RecipeError, match="no such file"):
        rt.wav_list(scp, tmp_path / "list.txt")


#: helpers.TINY_CODEC with 4 layers (stage 5 decodes 1, 2 and 4 of them)
TINY_CODEC = {**helpers.TINY_CODEC, "quantizer": {**helpers.TINY_CODEC["quantizer"], "num_layers": 4}}
TINY_SPEECH = {
    "encoder": {"type": "speech", "n_mels": 80, "channels": 16},
    "decoder": {
        "type": "speech",
        "n_mels": 80,
        "n_speakers": 2,
        "speaker_dim": 4,
        "hidden": 8,
        "num_layers": 1,
    },
    "quantizer": {"type": "gaussian_sq", "dim": 8, "codebook_size": 16, "var_type": "IV"},
}
TINY_URBAN = {
    "encoder": {"type": "urbansound", "channels": 8, "n_res_block": 1, "res_channels": 4},
    "quantizer": {"type": "residual_sq", "dim": 4, "codebook_size": 4, "num_layers": 2},
}


def _tiny_exp(exp: Path, model_cfg: dict, data: dict, speakers: dict | None = None):
    """A trainer-format checkpoint of an untrained tiny model (``exp/best.pt``)."""
    import json

    import torch

    from sqcodec.model import build_model
    from sqcodec.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(model_cfg)
    save_checkpoint(
        {"step": 7, "model": model.state_dict(), "config": {"model": model_cfg, "data": data}},
        exp / "best.pt",
    )
    if speakers is not None:
        (exp / "speakers.json").write_text(json.dumps(speakers))
    return model.eval()


@pytest.mark.parametrize(
    ("model_cfg", "data", "n", "latent_shape"),
    [
        (TINY_CODEC, {"preset": "codec16k"}, 101, (51,)),  # odd length: the codec pads inside
        (TINY_SPEECH, {"preset": "vctk"}, 101, (51,)),  # + one edge frame each side, even target
        (TINY_URBAN, {"preset": "urbansound", "channel_axis": True}, 344, (20, 86)),  # (B, 1, 80, T)
    ],
)
def test_model_io_full_utterances(tmp_path, model_cfg, data, n, latent_shape):
    from sqcodec.recipe_eval import _ModelIO

    model = _tiny_exp(tmp_path, model_cfg, data)
    io = _ModelIO(model, {"data": data}, tmp_path)
    feat = np.random.default_rng(0).normal(size=(80, n)).astype(np.float32)
    spk = 1 if getattr(model.decoder, "uses_speaker", False) else None
    layers = model.quantizer.num_layers
    codes, y = io.encode_decode(feat, layers, spk, "cpu")
    assert codes.dtype == np.int32 and codes.shape == (layers, *latent_shape)
    assert y.shape == (80, n) and np.isfinite(y).all()


def _small_set(files: list[Path], root: Path, name: str, spk_of) -> Path:
    d = root / "data" / name
    rt.write_data_dir(d, {f.stem: f for f in files}, {f.stem: spk_of(f) for f in files})
    return d


def test_decode_and_score_codec_griffinlim(realaudio, tmp_path):
    """Stages 5 + 6 in process: a tiny codec16k model (untrained), Griffin-Lim, 2 utterances."""
    import json

    import kaldiio
    import torch

    from sqcodec.recipe_eval import decode_set, score_sets

    pool = sorted((realaudio / "speech/librispeech/test-other").glob("*/*.flac"))[:12]
    files = sorted(pool, key=lambda f: sf.info(f).frames)[:2]
    data = _small_set(files, tmp_path, "test", lambda f: f.stem.split("-")[0])
    raw = tmp_path / "dump/test/raw/feats"
    rt.extract_feats(data / "wav.scp", "codec16k", raw)
    exp = tmp_path / "exp/tiny"
    model = _tiny_exp(exp, TINY_CODEC, {"preset": "codec16k"})
    scp = raw.with_name("feats.scp")
    res = decode_set(exp, "test", scp, scp, data, "codec16k", "griffinlim")
    assert res["layers"] == [1, 2, 4] and res["utterances"] == 2
    feats = ark_feats(scp)
    for n in (1, 2, 4):
        d = exp / f"decode_test_L{n}"
        dec, codes = (
            ark_feats(d / "feats.scp"),
            {k: np.asarray(v) for k, v in kaldiio.load_scp(str(d / "codes.scp")).items()},
        )
        assert sorted(dec) == sorted(codes) == sorted(feats)
        for utt, x in feats.items():
            assert dec[utt].shape == x.shape and codes[utt].shape == (n, (x.shape[0] + 1) // 2)
            with torch.no_grad():
                want = model.reconstruct(torch.from_numpy(x.T.copy())[None], layers=n)[0].numpy()
            np.testing.assert_allclose(dec[utt].T, want, atol=1e-5)
            assert np.array_equal(
                codes[utt], model.encode(torch.from_numpy(x.T.copy())[None], layers=n)[0].numpy()
            )
        info = json.loads((d / "info.json").read_text())
        assert info["layers"] == n and info["codebook_sizes"] == [16] * n and info["step"] == 7
        assert (d / "log/decode.log").is_file()
    for f in files:
        n_samples = sf.info(f).frames
        for sub in ("ref", "resyn", "L1", "L4"):
            w = exp / f"decode_test_{sub}/wav/{f.stem}.wav"
            assert sf.info(w).frames == n_samples and sf.info(w).samplerate == 16000, w
    ref, _ = sf.read(exp / f"decode_test_ref/wav/{files[0].stem}.wav")
    orig, _ = sf.read(files[0])
    assert np.abs(ref - orig).max() < 1e-3  # the reference at the preset rate (16-bit)

    out = exp / "scores"
    score_sets(
        exp, ["test"], "codec16k", {"test": scp}, out, stats_path=None, metrics="log_mel_rmse,mel_mse_db2"
    )
    summary = json.loads((out / "summary.json").read_text())
    assert [r["decode"] for r in summary["rows"]] == ["resyn", "L1", "L2", "L4"]
    rows = {r["decode"]: r for r in summary["rows"]}
    assert rows["resyn"]["bps"] is None and rows["resyn"]["feat_log_mel_rmse"] is None
    for n in (1, 2, 4):
        r = rows[f"L{n}"]
        assert r["bps"] == pytest.approx(n * 4 * 31.25, rel=0.02)  # 4 bits/layer, 31.25 latents/s (+ ceil)
        assert len(r["perplexity"]) == n and all(1 <= v <= 16 for v in r["perplexity"])
        assert np.isfinite([r["feat_log_mel_rmse"], r["feat_mel_mse_db2"], r["wav_log_mel_rmse"]]).all()
        rep = json.loads((out / f"test_L{n}.json").read_text())
        assert rep["count"] == 2 and rep["features"]["means"]["log_mel_rmse"] == pytest.approx(
            r["feat_log_mel_rmse"]
        )
        assert all(f"| {f.stem} |" in (out / f"test_L{n}.md").read_text() for f in files)
    md = (out / "summary.md").read_text()
    assert "| test | L4 |" in md and "mel dB²" in md and "griffinlim" in md
    # the one-page report: the summary table and a spectrogram comparison per example utterance
    report = (out / "report.md").read_text()
    assert "| test | L4 |" in report
    pngs = sorted((out / "spectrograms").glob("test_*.png"))
    assert len(pngs) == 2 and all(f"spectrograms/{p.name}" in report for p in pngs)
    from PIL import Image

    with Image.open(pngs[0]) as im:  # reference + resyn + 3 layer counts = 5 panels of 1.7 in at 90 dpi
        assert im.format == "PNG" and im.size == (8 * 90, round(5 * 1.7 * 90))


def test_decode_speaker_model_standardised(realaudio, tmp_path):
    """A speaker-conditioned speech decoder on standardised vctk features: speaker ids from speakers.json,
    normalisation undone before vocoding; an unknown speaker is a clear error."""
    import torch

    from sqcodec.audio import FeatureStats, destandardise
    from sqcodec.recipe_eval import decode_set

    spk_dirs = sorted((realaudio / "speech/vctk48k").iterdir())[:3]
    files = [sorted(d.glob("*.flac"))[0] for d in spk_dirs]
    data = _small_set(files[:2], tmp_path, "test", lambda f: f.parent.name)
    raw = tmp_path / "dump/test/raw/feats"
    rt.extract_feats(data / "wav.scp", "vctk", raw)
    rt.compute_stats(raw.with_name("feats.scp"), tmp_path / "stats.json", "vctk")
    rt.normalize(raw.with_name("feats.scp"), tmp_path / "stats.json", tmp_path / "dump/test/norm/feats")
    norm_scp = tmp_path / "dump/test/norm/feats.scp"
    exp = tmp_path / "exp/spk"
    speakers = {files[0].parent.name: 0, files[1].parent.name: 1}
    model = _tiny_exp(exp, TINY_SPEECH, {"preset": "vctk", "speakers": "utt2spk"}, speakers)
    decode_set(
        exp,
        "test",
        norm_scp,
        raw.with_name("feats.scp"),
        data,
        "vctk",
        "griffinlim",
        feat_stats=tmp_path / "stats.json",
        utt2spk=data / "utt2spk",
    )
    stats = FeatureStats.load(tmp_path / "stats.json")
    dec = ark_feats(exp / "decode_test_L1/feats.scp")
    for f in files[:2]:
        x = ark_feats(norm_scp)[f.stem].T
        n = x.shape[1]
        xp = np.pad(x, ((0, 0), (1, 1 + n % 2)), mode="edge")  # one context frame each side, even target
        with torch.no_grad():
            codes = model.encode(torch.from_numpy(xp)[None])
            y = model.decode(codes, speaker=torch.tensor([speakers[f.parent.name]]), length=n + n % 2)[
                0, :, :n
            ]
        np.testing.assert_allclose(dec[f.stem].T, destandardise(y.numpy(), stats), rtol=1e-4, atol=1e-4)
        w = exp / f"decode_test_L1/wav/{f.stem}.wav"
        assert (
            sf.info(w).samplerate == 24000
            and sf.info(w).frames == sf.info(exp / f"decode_test_ref/wav/{f.stem}.wav").frames
        )
    # a speaker the decoder never saw
    other = _small_set(files, tmp_path, "other", lambda f: f.parent.name)
    rt.extract_feats(other / "wav.scp", "vctk", tmp_path / "dump/other/raw/feats")
    scp = tmp_path / "dump/other/raw/feats.scp"
    with pytest.raises(
        rt.RecipeError, match=f"speaker '{files[2].parent.name}' of .* is not in .*speakers.json"
    ):
        decode_set(exp, "other", scp, scp, other, "vctk", "griffinlim", utt2spk=other / "utt2spk")


@pytest.mark.slow
def test_recipe_mini_stages_0_6(realaudio, tmp_path):
    """The whole mini recipe on a CPU: features, a tiny codec, a tiny HiFi-GAN (last 2 steps with the
    GAN losses), decoding with 1/2/4 layers and scoring."""
    import json

    build_mini_librispeech(realaudio, tmp_path / "db", n_train=3, n_dev=2)
    work = tmp_path / "work"
    work.mkdir()
    steps = "--set train.steps=60 train.val_every=60 train.ckpt_every=60 train.log_every=20 train.plot=false"
    run_recipe(
        "mini_librispeech",
        work,
        tmp_path / "db",
        "--stage",
        "0",
        "--stop_stage",
        "6",
        "--ngpu",
        "0",
        "--tag",
        "smoke",
        "--train_args",
        steps,
        "--vocoder_steps",
        "20",
        "--vocoder_gan_start",
        "18",
        "--vocoder_args",
        "--batch 2 --segment 4096 --log-every 5",
    )
    voc = work / "exp/hifigan_codec16k_v3"
    assert (voc / "vocoder/vocoder.json").is_file() and (voc / "vocoder/vocoder.safetensors").is_file()
    rec = json.loads((voc / "vocoder/vocoder.json").read_text())["record"]
    assert rec["steps"] == 20 and rec["gan_start"] == 18
    log = [json.loads(x) for x in (voc / "train.jsonl").read_text().splitlines()]
    assert "d" in log[-1] and "stft" in log[0]  # generator-only warm-up, then GAN steps
    from sqcodec.vocoder import load_vocoder

    assert load_vocoder(voc / "vocoder").preset.name == "codec16k"
    exp = work / "exp/smoke"
    # stage 3
    assert (exp / "config.yaml").is_file() and (exp / "best.pt").is_file()
    log = (exp / "train.log").read_text()
    assert "data.train=" in log.splitlines()[0] and log.rstrip().endswith("status=0")
    assert (exp / "valid_list.txt").read_text().split() == keys(work / "data/dev/utt2spk")
    # stages 5-6
    dev = keys(work / "data/dev/wav.scp")
    lengths = {u: sf.info(p).frames for u, p in table(work / "data/dev/wav.scp").items()}
    for sub in ("ref", "resyn", "L1", "L2", "L4"):
        d = exp / f"decode_dev_{sub}"
        assert sorted(p.stem for p in (d / "wav").glob("*.wav")) == dev, sub
        for u in dev:
            assert sf.info(d / "wav" / f"{u}.wav").frames == lengths[u]
    for n in (1, 2, 4):
        assert (
            keys(exp / f"decode_dev_L{n}/feats.scp") == dev
            and keys(exp / f"decode_dev_L{n}/codes.scp") == dev
        )
    scores = exp / "scores"
    for name in ("resyn", "L1", "L2", "L4"):
        assert (scores / f"dev_{name}.json").is_file() and (scores / f"dev_{name}.md").is_file()
    summary = json.loads((scores / "summary.json").read_text())
    rows = {r["decode"]: r for r in summary["rows"]}
    assert list(rows) == ["resyn", "L1", "L2", "L4"]
    for name, r in rows.items():
        vals = [r["wav_log_mel_rmse"], r["stoi"], r["pesq_wb"]]
        if name != "resyn":
            vals += [r["bps"], r["feat_log_mel_rmse"], r["feat_mel_mse_db2"], *r["perplexity"]]
        assert np.isfinite(np.array(vals, dtype=float)).all(), (name, r)
    assert rows["L4"]["feat_log_mel_rmse"] <= rows["L1"]["feat_log_mel_rmse"]
    assert rows["L4"]["bps"] == pytest.approx(4 * rows["L1"]["bps"])
    assert "| dev | L4 |" in (scores / "summary.md").read_text()
    assert (exp / "decode_dev_jobs/log/decode.1.log").read_text().rstrip().endswith("status=0")
    assert (scores / "log/score.log").is_file()


@pytest.mark.slow
def test_recipe_vctk_stages_5_6_standardised_speakers(realaudio, tmp_path):
    """vctk (hop 300, standardised features, speaker-conditioned decoder) through stages 0-3 with a tiny
    model, then 5-6 with Griffin-Lim: speaker ids and de-standardisation in the shell pipeline."""
    import json

    build_vctk080(realaudio, tmp_path / "db")
    work = tmp_path / "work"
    work.mkdir()
    tiny = (
        "--set model.encoder.channels=16 model.decoder.hidden=8 model.decoder.speaker_dim=4 "
        "model.quantizer.dim=8 model.quantizer.codebook_size=16 train.steps=4 train.batch_size=4 "
        "train.val_every=4 train.ckpt_every=4 train.log_every=2 train.plot=false"
    )
    common = ("--ngpu", "0", "--tag", "tiny")
    run_recipe(
        "vctk", work, tmp_path / "db", "--stage", "0", "--stop_stage", "3", *common, "--train_args", tiny
    )
    run_recipe(
        "vctk", work, tmp_path / "db", "--stage", "5", "--stop_stage", "6", *common, "--vocoder", "griffinlim"
    )
    exp = work / "exp/tiny"
    test = keys(work / "data/test/wav.scp")
    assert keys(exp / "decode_test_L1/feats.scp") == test and not (exp / "decode_test_L2").exists()
    raw = ark_feats(work / "dump/test/raw/feats.scp")
    dec = ark_feats(exp / "decode_test_L1/feats.scp")
    for u in test:
        assert dec[u].shape == raw[u].shape
        # decoded features are back in the raw log10 domain (not standardised): same scale as the input
        assert abs(dec[u].mean() - raw[u].mean()) < 3.0 and dec[u].mean() < -1.0
        n = sf.info(exp / f"decode_test_ref/wav/{u}.wav").frames
        assert sf.info(exp / f"decode_test_L1/wav/{u}.wav").frames == n and n // 300 + 1 == raw[u].shape[0]
    info = json.loads((exp / "decode_test_L1/info.json").read_text())
    assert info["feature_stats"].endswith("dump/train/stats.json") and info["preset"] == "vctk"
    summary = json.loads((exp / "scores/summary.json").read_text())
    assert [r["decode"] for r in summary["rows"]] == ["resyn", "L1"]
    l1 = summary["rows"][1]
    assert l1["bps"] == pytest.approx(4 * 40, rel=0.05)  # 40 latents/s x log2 16
    assert l1["feat_log_mel_rmse_norm"] is not None and np.isfinite(l1["feat_mel_mse_db2"])


def test_wave_metrics_without_pesq(monkeypatch):
    import importlib.util

    from sqcodec import recipe_eval

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pesq" else real(name, *a)
    )
    names, notes = recipe_eval.wave_metrics()
    assert names == ["log_mel_rmse", "mel_mse_db2", "stoi"]
    assert notes == ["pesq_wb: skipped, the 'pesq' package is not installed (pip install pesq)"]


# ------------------------------------------------------------------------------------------ stage 7
def _abx_items(files: list[Path], path: Path) -> Path:
    """An item file over ``files``: 8 alternating 'a'/'b' segments of 0.1 s per file in one context, the
    speaker the file-name prefix (labels arbitrary: what is tested is the plumbing, not the phonetics)."""
    lines = ["#file onset offset #phone prev-phone next-phone speaker"]
    for f in files:
        for i in range(8):
            t = 0.2 + 0.1 * i
            lines.append(f"{f.stem} {t:.2f} {t + 0.1:.2f} {'ab'[i % 2]} x y {f.stem.split('_')[0]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_abx_audio_links(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    for f in (a, b):
        sf.write(f, np.zeros(1600), 16000)
    scp = tmp_path / "wav.scp"
    scp.write_text(f"u1 {a}\nu2 {b}\n")
    out = tmp_path / "links"
    assert rt.abx_audio(scp, out) == 2
    assert sorted(p.name for p in out.iterdir()) == ["u1.wav", "u2.flac"]
    assert (out / "u2.flac").resolve() == b.resolve()
    scp.write_text(f"u3 {a}\n")  # a re-run rebuilds the folder from scratch
    assert rt.abx_audio(scp, out) == 1 and [p.name for p in out.iterdir()] == ["u3.wav"]
    (out / "keep.txt").write_text("mine")
    with pytest.raises(rt.RecipeError, match="not links"):
        rt.abx_audio(scp, out)
    assert (out / "keep.txt").read_text() == "mine"
    scp.write_text(f"u4 sox {a} -t wav - |\n")
    with pytest.raises(rt.RecipeError, match="piped entry"):
        rt.abx_audio(scp, tmp_path / "other")


def test_recipe_stage7_abx_equals_sqcodec_abx(realaudio, tmp_path):
    """Stage 7 of a real run.sh on ZeroSpeech 2019 test files and a tiny checkpoint gives exactly what
    `sqcodec abx` gives on the original folder; a missing item file stops the recipe naming the option."""
    import json

    zs = realaudio / "speech" / "zerospeech2019_english"
    files = sorted(zs.glob("S0[23]*.flac"))  # S022 (two files), S029, S030
    work = tmp_path / "work"
    _small_set(files, work, "abx", lambda f: f.stem.split("_")[0])
    _tiny_exp(work / "exp" / "tiny", TINY_CODEC, {"preset": "codec16k"})
    item = _abx_items(files, tmp_path / "test.item")
    stage7 = ("--stage", "7", "--stop_stage", "7", "--tag", "tiny", "--abx_item")
    r = run_recipe("zerospeech2019", work, tmp_path, *stage7, str(item))
    out = work / "exp" / "tiny" / "abx"
    assert sorted(p.name for p in (out / "audio_abx").iterdir()) == sorted(f.name for f in files)
    got = json.loads((out / "abx_continuous.json").read_text())
    code, _, err = helpers.run_cli(
        "abx",
        item,
        "--audio",
        zs,
        "--model",
        work / "exp" / "tiny" / "best.pt",
        "--no-progress",
        "--json",
        tmp_path / "direct.json",
    )
    assert code == 0, err
    want = json.loads((tmp_path / "direct.json").read_text())
    assert got["items_used"] == 32 and got["speakers"] == 3
    assert (got["within"], got["across"]) == (want["within"], want["across"])
    assert all(0 <= got[m]["error"] <= 100 and got[m]["triplets"] > 0 for m in ("within", "across"))
    assert (out / "abx_continuous.md").read_text() in r.stdout + r.stderr
    r = run_recipe("zerospeech2019", work, tmp_path, *stage7, str(tmp_path / "missing.item"), check=False)
    assert r.returncode != 0 and "--abx_item" in r.stderr and "missing.item" in r.stderr
