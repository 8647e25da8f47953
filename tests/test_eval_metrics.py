"""Objective metrics (sqcodec.eval): ideal values, monotone degradation on real speech, definitions on
synthetic features, codebook perplexity / bitrate from .codes files, folder matching and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
import typer
from typer.testing import CliRunner

from sqcodec.audio import FeatureStats, load_mono, wave_to_features, write_audio
from sqcodec.bitstream import CodesFile, write_codes
from sqcodec.cli_eval import register
from sqcodec.eval import metrics as M
from sqcodec.eval.score import match_dirs, parse_metrics, score, score_dirs, to_markdown

UTT = "speech/librispeech/test-other/2033/2033-164914-0004.flac"  # 4.3 s, 16 kHz
SR = 16000
METRICS = ("mel_mse_db2", "log_mel_rmse", "mel_distance", "mcd", "pesq_wb", "pesq_nb", "stoi", "estoi")
HIGHER = {"pesq_wb", "pesq_nb", "stoi", "estoi"}


@pytest.fixture(scope="module")
def speech(realaudio: Path) -> np.ndarray:
    wave, info = load_mono(realaudio / UTT)
    assert info.sample_rate == SR
    return wave.astype(np.float64)


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(x.size)
    n *= math.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr_db / 10))
    return x + n


def _lowpass(x: np.ndarray, fc: float) -> np.ndarray:
    return ss.sosfiltfilt(ss.butter(10, fc, fs=SR, output="sos"), x)


def _badness(name: str, v: float) -> float:
    return -v if name in HIGHER else v


# ------------------------------------------------------------------------------------ real speech


def test_identical_signals_give_ideal_values(speech: np.ndarray) -> None:
    r = score(speech, speech.copy(), sample_rate=SR)
    assert r["mel_mse_db2"] == 0.0 and r["log_mel_rmse"] == 0.0 and r["mcd"] == 0.0
    assert r["mel_distance"] == 0.0
    assert r["stoi"] == pytest.approx(1.0, abs=1e-6) and r["estoi"] == pytest.approx(1.0, abs=1e-6)
    assert 4.5 < r["pesq_wb"] <= 4.644  # pesq's wb maximum
    assert 4.4 < r["pesq_nb"] <= 4.549  # pesq's nb maximum
    assert r["cropped_samples"] == 0 and r["sample_rate"] == SR


@pytest.mark.parametrize(
    ("kind", "levels", "ties"),
    [
        ("noise", (20, 10, 0), {}),
        # PESQ nb scores 8 kHz audio (band < 4 kHz): low-pass at 6 and at 4 kHz are both invisible to it.
        ("lowpass", (6000, 4000, 2000), {"pesq_nb": {(0, 1), (1, 2)}, "stoi": {(0, 1)}, "estoi": {(0, 1)}}),
    ],
)
def test_degradation_is_monotone(speech: np.ndarray, kind: str, levels: tuple, ties: dict) -> None:
    x = speech
    degraded = [_noisy(x, lv) if kind == "noise" else _lowpass(x, lv) for lv in levels]
    rows = [score(x, x, sample_rate=SR, metrics=METRICS)] + [
        score(x, y, sample_rate=SR, metrics=METRICS) for y in degraded
    ]
    for name in METRICS:
        vals = [_badness(name, r[name]) for r in rows]
        for i in range(len(vals) - 1):
            if (i, i + 1) in ties.get(name, set()):
                assert vals[i + 1] >= vals[i] - 2e-3, (kind, name, vals)  # no better (up to pesq jitter)
            else:
                assert vals[i + 1] > vals[i], (kind, name, i, vals)
        assert vals[-1] > vals[0], (kind, name, vals)


def test_different_lengths_are_cropped_and_reported(speech: np.ndarray) -> None:
    x = speech[: 2 * SR]
    r = score(x, np.concatenate([x, np.zeros(123)]), sample_rate=SR, metrics="mel_mse_db2,stoi")
    assert r["cropped_samples"] == 123 and "123" in r["note"]
    assert r["mel_mse_db2"] == 0.0 and r["stoi"] == pytest.approx(1.0, abs=1e-6)


def test_mcd_dtw_option(speech: np.ndarray) -> None:
    x = speech[: 2 * SR]
    a = wave_to_features(x.astype(np.float32), "codec16k")
    assert M.mcd(a, a, dtw=True) == 0.0
    b = np.concatenate([a[:, :3], a], axis=1)  # 3 frames late
    assert M.mcd(a, b, dtw=True) < 0.5 * M.mcd(a, b)


def test_pesq_without_utterances_is_nan_with_warning() -> None:
    tone = np.sin(2 * np.pi * 7900 * np.arange(2 * SR) / SR)  # nothing left below 4 kHz for nb
    with pytest.warns(RuntimeWarning, match="PESQ nb"):
        assert math.isnan(M.pesq_score(tone, tone, SR, "nb"))
    with pytest.warns(RuntimeWarning, match="all zeros"):
        assert math.isnan(M.pesq_score(np.zeros(SR), tone[:SR], SR, "wb"))


# ----------------------------------------------------------------------------- exact definitions


def test_mel_mse_db_definition_per_preset() -> None:
    rng = np.random.default_rng(1)
    f = rng.standard_normal((80, 50))
    # zerospeech features are dB/80 + 1: an error e is (80 e)^2 dB^2
    assert M.mel_mse_db(f, f + 0.01, "zerospeech") == pytest.approx(0.64)
    # vctk features are log10: an error e is (20 e)^2
    assert M.mel_mse_db(f, f + 0.05, "vctk") == pytest.approx(1.0)
    # codec16k features are ln: an error e is (20 e / ln 10)^2
    assert M.mel_mse_db(f, f + 0.1, "codec16k") == pytest.approx((2 / math.log(10)) ** 2)
    # standardised features: the stats are undone first (std 2 doubles the error)
    st = FeatureStats(80)
    st.update(np.stack([np.full((80, 1), -2.0), np.full((80, 1), 2.0)]))  # mean 0, std 2 per bin
    assert np.allclose(st.std, 2.0)
    assert M.mel_mse_db(f, f + 0.025, "vctk", stats=st) == pytest.approx(1.0)
    # trim_edges scores mel[:, 1:-1]
    g = f.copy()
    g[:, 0] += 1.0
    g[:, -1] -= 1.0
    assert M.mel_mse_db(f, g, "vctk") > 0 and M.mel_mse_db(f, g, "vctk", trim_edges=True) == 0.0
    # frames are cropped to the shorter
    assert M.mel_mse_db(f, f[:, :40], "vctk") == 0.0


def test_log_mel_rmse_unnormalised_and_normalised() -> None:
    rng = np.random.default_rng(2)
    f = rng.standard_normal((80, 30))
    d = rng.standard_normal((80, 30)) * 0.1
    want = math.sqrt(np.mean(d**2))
    assert M.log_mel_rmse(f, f + d, "urbansound") == pytest.approx(want)
    assert M.log_mel_rmse(f, f + d, "vctk") == pytest.approx(want * math.log(10))  # log10 -> ln
    st = FeatureStats(80)
    st.update(np.stack([np.full((80, 1), 1.0), np.full((80, 1), 5.0)]))  # mean 3, std 2
    assert M.log_mel_rmse(f, f + d, "urbansound", stats=st) == pytest.approx(want / 2)


def test_mcd_definition() -> None:
    # ln mel differing by a pure cosine of quefrency d: Δc_d = a/2, so MCD = 10√2/ln10 · a/2
    k = np.arange(80)
    a, d = 0.3, 5
    f = np.zeros((80, 10))
    g = f + a * np.cos(np.pi * d * (k + 0.5) / 80)[:, None]
    assert M.mcd(f, g, "codec16k") == pytest.approx(M.MCD_CONST * a / 2)
    assert M.mcd(f, f + 1.0, "codec16k") == pytest.approx(0.0, abs=1e-9)  # level (c_0) ignored


# ------------------------------------------------------------------------------- codes files


def _codes(codes: np.ndarray, sizes: list[int]) -> CodesFile:
    return CodesFile(
        codes=codes,
        codebook_sizes=sizes,
        model_id="test",
        model_sha256="0" * 64,
        preset="codec16k",
        sample_rate=16000,
        hop=256,
        latent_rate=62.5,
        orig_sample_rate=16000,
        orig_length=codes.shape[1] * 256,
    )


def test_codebook_perplexity_and_bitrate(tmp_path: Path) -> None:
    n = 64 * 20
    uniform = np.tile(np.arange(64), n // 64)
    one = np.full(n, 7)
    half = np.tile(np.arange(16), n // 16)  # 16 of the 256 codes, uniformly
    p1 = write_codes(tmp_path / "a.codes", _codes(np.stack([uniform, one, half]), [64, 64, 256]))
    p2 = write_codes(
        tmp_path / "b.codes", _codes(np.stack([uniform[:640], one[:640], half[:640]]), [64, 64, 256])
    )
    ppl = M.codebook_perplexity([p1, p2])
    assert ppl == pytest.approx([64.0, 1.0, 16.0])
    # two files with disjoint single codes: perplexity 2 over both
    q1 = write_codes(tmp_path / "c.codes", _codes(np.zeros((1, 100), dtype=np.int64), [8]))
    q2 = write_codes(tmp_path / "d.codes", _codes(np.ones((1, 100), dtype=np.int64), [8]))
    assert M.codebook_perplexity([q1, q2]) == pytest.approx([2.0])
    bps = M.bits_per_second(p1)
    assert bps["nominal"] == pytest.approx(62.5 * (6 + 6 + 8))
    assert bps["actual"] == pytest.approx(p1.stat().st_size * 8 / (n / 62.5))


# ------------------------------------------------------------------------ folders, output, CLI


def _clips(speech: np.ndarray, root: Path, names: list[str], snr: float | None) -> None:
    for i, name in enumerate(names):
        x = speech[i * SR // 2 : i * SR // 2 + SR]
        y = x if snr is None else _noisy(x, snr, seed=i)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_audio(root / name, np.clip(y, -1, 1), SR)


def test_score_dirs_matches_by_name(speech: np.ndarray, tmp_path: Path) -> None:
    ref, deg = tmp_path / "ref", tmp_path / "deg"
    _clips(speech, ref, ["a.wav", "sub/b.wav", "c.wav"], None)
    _clips(speech, deg, ["a.flac", "sub/b.wav", "d.wav"], 10)
    m = match_dirs(ref, deg)
    assert [k for k, _, _ in m["pairs"]] == ["a", "sub/b"]
    assert m["unmatched_ref"] == [str(ref / "c.wav")] and m["unmatched_deg"] == [str(deg / "d.wav")]
    res = score_dirs(ref, deg, metrics="mel_mse_db2,stoi")
    assert res["count"] == 2 and [r["key"] for r in res["rows"]] == ["a", "sub/b"]
    assert res["means"]["stoi"] == pytest.approx(np.mean([r["stoi"] for r in res["rows"]]))
    md = to_markdown(res)
    assert "| sub/b |" in md and "**mean (2)**" in md and "unmatched reference files: 1" in md


def test_parse_metrics() -> None:
    assert parse_metrics("pesq, stoi") == ["pesq_wb", "pesq_nb", "stoi"]
    assert "log_mel_rmse_norm" not in parse_metrics(None)
    assert "log_mel_rmse_norm" in parse_metrics(None, have_stats=True)
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metrics("pesq,nope")
    with pytest.raises(ValueError, match="stats"):
        parse_metrics("log_mel_rmse_norm")


@pytest.fixture()
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # keep "score" a subcommand
        pass

    register(app)
    return app


def test_cli_end_to_end(cli: typer.Typer, speech: np.ndarray, tmp_path: Path) -> None:
    ref, deg = tmp_path / "ref", tmp_path / "deg"
    _clips(speech, ref, ["a.wav", "b.wav"], None)
    _clips(speech, deg, ["a.wav", "b.wav"], 10)
    codes = write_codes(tmp_path / "x.codes", _codes(np.tile(np.arange(4), (2, 50)), [4, 4]))
    runner = CliRunner()
    out_json, out_md = tmp_path / "o" / "s.json", tmp_path / "s.md"
    args = ["score", str(ref), str(deg), "--metrics", "pesq_wb,stoi,mcd", "--json", str(out_json)]
    res = runner.invoke(cli, [*args, "--markdown", str(out_md), "--codes", str(codes)])
    assert res.exit_code == 0, res.output
    data = json.loads(out_json.read_text())
    assert data["metrics"] == ["pesq_wb", "stoi", "mcd"] and data["count"] == 2
    assert data["codes"]["perplexity"] == pytest.approx([4.0, 4.0])
    assert 1.0 < data["means"]["pesq_wb"] < 4.0
    assert "**mean (2)**" in out_md.read_text() and "| a |" in res.stdout
    # two files
    res = runner.invoke(cli, ["score", str(ref / "a.wav"), str(ref / "a.wav"), "--metrics", "mel_mse_db2"])
    assert res.exit_code == 0 and "| 0.0000 |" in res.stdout


def test_cli_bad_input(cli: typer.Typer, speech: np.ndarray, tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    write_audio(good, speech[:SR], SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    runner = CliRunner()
    for args, who in [
        (["score", str(good), str(bad)], str(bad)),
        (["score", str(good), str(tmp_path / "missing.wav")], "missing.wav"),
        (["score", str(good), str(good), "--metrics", "nope"], "nope"),
        (["score", str(good), str(good), "--preset", "nope"], "nope"),
    ]:
        res = runner.invoke(cli, args)
        assert res.exit_code == 1, (args, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sqcodec: error: ") and who in lines[0], res.stderr


def test_normalised_rmse_and_other_presets(speech: np.ndarray) -> None:
    x = speech[: 2 * SR]
    y = _noisy(x, 10)
    st = FeatureStats(80, "vctk").update(wave_to_features(x.astype(np.float32), "vctk", sample_rate=SR))
    r = score(x, y, preset="vctk", sample_rate=SR, stats=st, metrics="rmse,log_mel_rmse_norm,mel_mse_db2")
    assert r["log_mel_rmse_norm"] > 0 and r["log_mel_rmse"] > 0
    # unnormalised RMSE in nepers and MSE in dB² describe the same error: MSE = (20/ln10)² · RMSE²
    assert r["mel_mse_db2"] == pytest.approx((20 / math.log(10)) ** 2 * r["log_mel_rmse"] ** 2, rel=1e-4)
    z = score(x, y, preset="zerospeech", sample_rate=SR, metrics="mel_mse_db2,mcd")
    assert z["mel_mse_db2"] > 0 and z["mcd"] > 0
