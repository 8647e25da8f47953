"""Image metrics: SSIM against an independent formula, perplexity, LPIPS skip message, grids, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from sqcodec.data.images import write_split
from sqcodec.eval import image_metrics as imx
from sqcodec.model import build_model


def _ssim_scipy(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two 2-D images, Gaussian sigma 1.5 truncated to 11 taps, valid region (numpy/scipy)."""
    f = lambda a: gaussian_filter(a, 1.5, truncate=5 / 1.5, mode="constant")[5:-5, 5:-5]  # noqa: E731
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())


def test_ssim_matches_an_independent_implementation():
    rng = np.random.default_rng(0)
    x = rng.random((24, 24))
    y = np.clip(x + 0.1 * rng.standard_normal((24, 24)), 0, 1)
    ours = imx.ssim(torch.tensor(x)[None, None], torch.tensor(y)[None, None])
    assert float(ours[0]) == pytest.approx(_ssim_scipy(x, y), abs=1e-5)
    same = imx.ssim(torch.tensor(x)[None, None], torch.tensor(x)[None, None])
    assert float(same[0]) == pytest.approx(1.0, abs=1e-6)


def test_perplexity_of_counts():
    assert imx.perplexity_of_counts(np.array([5, 5, 5, 5])) == pytest.approx(4.0)
    assert imx.perplexity_of_counts(np.array([7, 0, 0])) == pytest.approx(1.0)


def test_lpips_is_skipped_with_a_message_when_weights_are_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ok, msg = imx.lpips_status()
    if ok:  # pragma: no cover - only where lpips and its weights are installed
        pytest.skip("LPIPS is available here")
    assert msg.startswith("skipped: LPIPS")


def test_grid_places_originals_above_reconstructions():
    o = np.zeros((3, 4, 4, 1), np.uint8)
    r = np.full((3, 4, 4, 1), 200, np.uint8)
    g = imx.grid_image(o, r, ncol=3)
    assert g.shape == (2 + 2 * 6, 2 + 3 * 6, 3)
    assert (g[2:6, 2:6] == 0).all() and (g[8:12, 2:6] == 200).all()
    masks = imx.grid_image(np.ones((1, 4, 4, 1), np.uint8), np.zeros((1, 4, 4, 1), np.uint8), num_classes=19)
    assert (masks[8:12, 2:6] == 0).all() and (masks[2:6, 2:6] != 255).any()


def test_evaluate_split_pixels_and_class_maps():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    enc = {"type": "image", "in_channels": 1, "downsample": 2, "n_res_block": 1}
    model = build_model(
        {
            "encoder": enc,
            "decoder": {"type": "image", "out_channels": 1, "upsample": 2, "n_res_block": 1},
            "quantizer": {"type": "gaussian_sq", "dim": 8, "codebook_size": 16},
        }
    )
    images = rng.integers(0, 256, (5, 8, 8, 1), np.uint8)
    res = imx.evaluate_split(model, images, {"image_input": "real"}, batch_size=2)
    assert res["n_images"] == 5 and res["rmse"] == pytest.approx(np.sqrt(res["mse"]))
    assert 0 < res["mse"] < 1 and -1 <= res["ssim"] <= 1 and 1 <= res["perplexity_l1"] <= 16
    grid_o, grid_r = res["_grid"]
    assert grid_o.shape == grid_r.shape == (2, 8, 8, 1)
    mask_model = build_model(
        {
            "encoder": {**enc, "in_channels": 5},
            "decoder": {
                "type": "image",
                "out_channels": 5,
                "upsample": 2,
                "n_res_block": 1,
                "activation": "none",
            },
            "quantizer": {"type": "vmf_sq", "dim": 9, "codebook_size": 16},
            "reconstruction": {"type": "vmf_categorical", "num_classes": 5},
        }
    )
    masks = rng.integers(0, 5, (3, 8, 8, 1), np.uint8)
    res = imx.evaluate_split(mask_model, masks, {"image_input": "onehot", "num_classes": 5})
    assert 0 <= res["accuracy"] <= 1 and 0 <= res["miou"] <= 1 and "mse" not in res


def test_evaluate_cli_needs_a_checkpoint(tmp_path, capsys):
    write_split(tmp_path / "test.npz", np.zeros((2, 8, 8, 1), np.uint8))
    rc = imx.main(
        [
            "evaluate",
            "--exp",
            str(tmp_path / "exp"),
            "--split",
            str(tmp_path / "test.npz"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 1 and "no checkpoint" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text(json.dumps({"name": "a", "mse": 0.01, "perplexity_l1": 3.0}))
    assert imx.main(["summary", "--out", str(tmp_path / "s.md"), str(tmp_path / "a")]) == 0
    assert "| a | 0.01000 |" in (tmp_path / "s.md").read_text()
