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


def test_recipe_pending_stages_fail(tmp_path):
    r = run_recipe("mini_librispeech", tmp_path, tmp_path, "--stage", "4", "--stop_stage", "4", check=False)
    assert r.returncode != 0 and "NOT YET AVAILABLE" in r.stderr


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


@pytest.mark.slow
def test_recipe_mini_stage3_trains(realaudio, tmp_path):
    build_mini_librispeech(realaudio, tmp_path / "db", n_train=3, n_dev=1)
    work = tmp_path / "work"
    work.mkdir()
    steps = "--set train.steps=2 train.val_every=2 train.ckpt_every=2 train.log_every=1 train.plot=false"
    run_recipe(
        "mini_librispeech",
        work,
        tmp_path / "db",
        "--stage",
        "0",
        "--stop_stage",
        "3",
        "--ngpu",
        "0",
        "--tag",
        "smoke",
        "--train_args",
        steps,
    )
    exp = work / "exp" / "smoke"
    assert (exp / "config.yaml").is_file() and (exp / "best.pt").is_file()
    log = (exp / "train.log").read_text()
    assert "data.train=" in log.splitlines()[0] and log.rstrip().endswith("status=0")
    assert (exp / "valid_list.txt").read_text().split() == keys(work / "data/dev/utt2spk")
