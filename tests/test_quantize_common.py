"""Shared quantizer properties: temperature schedule and its effect, perplexity bounds, config builder."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sqcodec.quantize import (
    GaussianSQ,
    ResidualSQ,
    ResidualVQ,
    TemperatureSchedule,
    VectorQuantizerEMA,
    VmfSQ,
    build_quantizer,
)


@pytest.mark.parametrize("step", [0, 1, 1000, 100_000, 500_000])
def test_temperature_schedule_is_exp_minus_1e5_step(step):
    assert TemperatureSchedule()(step) == pytest.approx(math.exp(-1e-5 * step), rel=1e-12)
    assert TemperatureSchedule(tau_min=0.5)(500_000) == 0.5


def _gap_to_nearest_codeword(m, out) -> float:
    q = out.quantized.detach().movedim(1, -1).reshape(-1, m.dim)
    return ((q[:, None] - m.codebook.detach()[None]) ** 2).sum(-1).min(-1).values.mean().item()


def test_temperature_sharpens_the_training_sample():
    torch.manual_seed(0)
    m = GaussianSQ(3, 6).train()
    z = torch.randn(4, 3, 8)
    gaps = []
    for tau in (10.0, 1.0, 1e-3):
        m.set_temperature(tau)
        torch.manual_seed(1)  # same Gumbel noise for every temperature
        gaps.append(_gap_to_nearest_codeword(m, m(z)))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-6
    m.set_temperature(TemperatureSchedule()(200_000))
    assert m.temperature.item() == pytest.approx(math.exp(-2.0))
    assert "temperature" in m.state_dict()


def _make(kind: str, dim: int, k: int):
    if kind == "gaussian":
        return GaussianSQ(dim, k)
    if kind == "vmf":
        return VmfSQ(dim, k)
    if kind == "rsq":
        return ResidualSQ(dim, k, 2)
    if kind == "vq":
        return VectorQuantizerEMA(dim, k)
    return ResidualVQ(dim, k, 2)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["gaussian", "vmf", "rsq", "vq", "rvq"]),
    k=st.integers(1, 9),
    dim=st.integers(1, 4),
    n=st.integers(1, 6),
    scale=st.floats(1e-3, 1e3),
    training=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_perplexity_within_one_and_codebook_size(kind, k, dim, n, scale, training, seed):
    torch.manual_seed(seed)
    m = _make(kind, dim, k).train(training)
    out = m(scale * torch.randn(2, dim, n))
    for key, val in out.stats.items():
        if key.startswith("perplexity"):
            assert 1.0 <= val <= k, (key, val)
        if key.startswith("entropy"):
            assert -1e-6 <= val <= math.log(k) + 1e-5


def test_perplexity_extremes():
    m = GaussianSQ(2, 4).eval()
    with torch.no_grad():
        m.codebook.copy_(torch.tensor([[0.0, 0.0], [9.0, 9.0], [-9.0, 9.0], [9.0, -9.0]]))
    z_one = torch.zeros(1, 2, 5)
    assert m(z_one).stats["perplexity_l1"] == pytest.approx(1.0)
    z_all = m.codebook.detach().t()[None]  # each codeword once
    assert m(z_all).stats["perplexity_l1"] == pytest.approx(4.0)


def test_build_quantizer_from_config():
    cases = {
        "gaussian_sq": (GaussianSQ, {"dim": 3, "codebook_size": 4, "var_type": "IV"}),
        "vmf_sq": (VmfSQ, {"dim": 3, "codebook_size": 4}),
        "residual_sq": (ResidualSQ, {"dim": 3, "codebook_size": 4, "num_layers": 2, "shared_codebook": True}),
        "vq": (VectorQuantizerEMA, {"dim": 3, "codebook_size": 4, "beta": 0.5}),
        "residual_vq": (ResidualVQ, {"dim": 3, "codebook_size": 4, "num_layers": 3}),
    }
    for name, (cls, kw) in cases.items():
        q = build_quantizer({"type": name, **kw})
        assert type(q) is cls and q.dim == 3
    assert build_quantizer(cases["residual_vq"][1] | {"type": "residual_vq"}).bits_per_position(2) == 4.0
    assert (
        build_quantizer(
            {"type": "gaussian_sq", "dim": 3, "codebook_size": 4, "var_type": "IV"}
        ).log_var_channels
        == 3
    )
    with pytest.raises(ValueError):
        build_quantizer({"type": "nope"})
    with pytest.raises(ValueError):
        build_quantizer({"type": "vq", "dim": 3, "codebook_size": 4, "bogus": 1})
