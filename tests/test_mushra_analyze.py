"""``sqcodec mushra analyze``: BS.1534-3 post-screening, statistics checked by hand, JSON/markdown/PNG."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from helpers import run_cli

from sqcodec.mushra import analyze as A
from sqcodec.mushra import csv_header
from sqcodec.mushra.common import PARTICIPANT_FIELDS

HEADER = csv_header(PARTICIPANT_FIELDS)
# Student t quantiles t(0.975, df) from a printed table
T975 = {2: 4.302653, 5: 2.570582}


def run_mushra(*args) -> tuple[int, str, str]:
    """``sqcodec mushra <args>`` on the real app."""
    return run_cli("mushra", *args)


def write_csv(path: Path, rows: list[tuple[str, str, str, float]], header=HEADER, delimiter=",") -> Path:
    """rows: (assessor uuid, trial, stimulus, score) -> a CSV as ``serve`` writes it."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        for who, trial, stim, score in rows:
            w.writerow(["demo", f"alias-{who}", "some", who, trial, stim, score, 1000, ""])
    return path


def screening_rows(n_trials: int = 10) -> list[tuple[str, str, str, float]]:
    """4 assessors x 10 trials. ``d`` rates the hidden reference 70 in 3 trials (30 %): excluded.
    ``c`` rates it 85 once (10 %, within the 15 % allowed): kept."""
    rows = []
    for who in "abcd":
        for t in range(n_trials):
            ref = 100.0
            if who == "d" and t in (1, 4, 7):
                ref = 70.0
            if who == "c" and t == 2:
                ref = 85.0
            rows += [
                (who, f"trial{t:02d}", "reference", ref),
                (who, f"trial{t:02d}", "sysA", 60.0 + t),
                (who, f"trial{t:02d}", "sysB", 40.0),
                (who, f"trial{t:02d}", "anchor35", 15.0),
            ]
    return rows


def test_exactly_the_careless_assessor_is_excluded(tmp_path: Path) -> None:
    report = A.analyze([write_csv(tmp_path / "r.csv", screening_rows())])
    assert report["excluded_assessors"] == ["d"]
    assert report["assessors_total"] == 4 and report["assessors_kept"] == 3
    d = next(a for a in report["assessors"] if a["assessor"] == "d")
    assert d["reference_below_threshold"] == 3 and d["reference_fraction"] == pytest.approx(0.3)
    assert "3 of 10" in d["reason"]
    c = next(a for a in report["assessors"] if a["assessor"] == "c")
    assert not c["excluded"] and c["reference_fraction"] == pytest.approx(0.1)
    ref = next(r for r in report["conditions"] if r["condition"] == "reference")
    assert ref["n"] == 30 and ref["assessors"] == 3  # d's ratings are gone, c's 85 stays
    assert ref["mean"] == pytest.approx((29 * 100 + 85) / 30)
    assert [r["condition"] for r in report["conditions"]] == ["reference", "sysA", "sysB", "anchor35"]


def test_statistics_on_a_hand_checked_example(tmp_path: Path) -> None:
    # sysX: assessor a rates 60 twice, b 70 twice, c 80 twice
    rows = []
    for who, s in (("a", 60.0), ("b", 70.0), ("c", 80.0)):
        for t in ("t1", "t2"):
            rows += [(who, t, "reference", 100.0), (who, t, "sysX", s)]
    rows += [("a", "t1", "sysY", 10.0), ("b", "t1", "sysY", 20.0), ("c", "t1", "sysY", 90.0)]
    report = A.analyze([write_csv(tmp_path / "r.csv", rows)])
    x = next(r for r in report["conditions"] if r["condition"] == "sysX")
    # over all 6 ratings: mean 70, s = sqrt(400 / 5), half width t(0.975, 5) * s / sqrt(6)
    assert (x["n"], x["assessors"], x["median"], x["mean"]) == (6, 3, 70.0, 70.0)
    assert x["std"] == pytest.approx(math.sqrt(80.0))
    assert x["ci95"] == pytest.approx(T975[5] * math.sqrt(80.0) / math.sqrt(6), rel=1e-5)  # 9.3866
    assert x["ci95"] == pytest.approx(9.3866, abs=1e-3)
    assert x["ci95_low"] == pytest.approx(70 - 9.3866, abs=1e-3)
    # over the 3 assessor means (60, 70, 80): s = 10, half width t(0.975, 2) * 10 / sqrt(3) = 24.841
    assert x["assessor_mean"] == 70.0
    assert x["assessor_ci95"] == pytest.approx(24.8414, abs=1e-3)
    y = next(r for r in report["conditions"] if r["condition"] == "sysY")
    assert (y["median"], y["mean"], y["q1"], y["q3"]) == (20.0, 40.0, 15.0, 55.0)
    ref = next(r for r in report["conditions"] if r["condition"] == "reference")
    assert ref["ci95"] == 0.0 and ref["median"] == 100.0


def test_mid_anchor_rule(tmp_path: Path) -> None:
    rows = []
    for who in "abc":
        for t in range(4):
            rows += [
                (who, f"t{t}", "reference", 100.0),
                (who, f"t{t}", "anchor70", 95.0 if who == "b" and t < 2 else 50.0),
            ]
    report = A.analyze([write_csv(tmp_path / "r.csv", rows)])
    assert report["excluded_assessors"] == ["b"]
    assert "mid anchor anchor70 above 90 in 2 of 4" in report["assessors"][1]["reason"]
    assert A.analyze([tmp_path / "r.csv"], mid_anchor=None)["excluded_assessors"] == []


def test_webmushra_csv_without_uuid_and_semicolons(tmp_path: Path) -> None:
    """An older webMUSHRA CSV: participant columns tell assessors apart, ``;`` separated."""
    header = ["session_test_id", "email", "age", "trial_id", "rating_stimulus", "rating_score", "rating_time",
              "rating_comment"]  # fmt: skip
    path = tmp_path / "mushra.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(header)
        for who, ref in (("x@a", 100), ("y@b", 50), ("z@c", 95)):
            for t in ("trial1", "trial2"):
                for stim, s in (("reference", ref), ("C1", 70), ("anchor35", 20), ("anchor70", 45)):
                    w.writerow(["default_example", who, "30", t, stim, s, 1234, ""])
    report = A.analyze([path])
    assert report["excluded_assessors"] == ["y@b / 30"]
    assert report["test_ids"] == ["default_example"]
    assert [r["condition"] for r in report["conditions"]] == ["reference", "C1", "anchor35", "anchor70"]


def test_cli_writes_json_markdown_and_violin_png(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "mushra.csv", screening_rows())
    out = tmp_path / "report"
    code, stdout, stderr = run_mushra("analyze", csv_path, "--out", out)
    assert code == 0, stderr
    assert "| sysA | 30 | 3 |" in stdout and "- d: rated the hidden reference below 90 in 3 of 10" in stdout
    report = json.loads((out / "mushra_analysis.json").read_text())
    assert report["excluded_assessors"] == ["d"]
    md = (out / "mushra_analysis.md").read_text()
    assert md.startswith("| condition | ratings |") and "| sysB | 30 | 3 | 40.0 |" in md
    png = out / "mushra_violin.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert sorted(p.name for p in out.iterdir()) == [
        "mushra_analysis.json",
        "mushra_analysis.md",
        "mushra_violin.png",
    ]


def _one_error_line(code: int, stdout: str, stderr: str) -> str:
    assert code == 1
    lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sqcodec: error:"), lines
    return lines[0]


def test_bad_csvs_fail_in_one_line_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "report"
    rows = screening_rows(2)
    rows[5] = (rows[5][0], rows[5][1], rows[5][2], "lots")
    bad = write_csv(tmp_path / "bad.csv", rows)
    line = _one_error_line(*run_mushra("analyze", bad, "--out", out))
    assert f"{bad}:7:" in line and "'lots'" in line
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    assert str(other) in _one_error_line(*run_mushra("analyze", other, "--out", out))
    assert "no such file" in _one_error_line(*run_mushra("analyze", tmp_path / "nope.csv", "--out", out))
    everyone_bad = write_csv(
        tmp_path / "all.csv", [("a", "t1", "reference", 10.0), ("b", "t1", "reference", 20.0)]
    )
    assert "all 2 assessors fail" in _one_error_line(*run_mushra("analyze", everyone_bad, "--out", out))
    no_ref = write_csv(tmp_path / "noref.csv", [("a", "t1", "sys", 10.0)])
    assert "--reference-name" in _one_error_line(*run_mushra("analyze", no_ref, "--out", out))
    assert not out.exists()
    # without screening everyone is kept
    code, _, err = run_mushra("analyze", everyone_bad, "--out", out, "--no-screening")
    assert code == 0, err
    assert json.loads((out / "mushra_analysis.json").read_text())["assessors_kept"] == 2
