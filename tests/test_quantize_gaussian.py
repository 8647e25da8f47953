"""Gaussian SQ (SQ-VAE eq. 7-8, Table 1): logits, objective, sampling, determinism, gradients, masks."""

from __future__ import annotations

import math

import pytest
import torch

from sqcodec.quantize import GaussianSQ

B, D, H, W, K = 2, 3, 4, 2, 5


def _setup(var_type: str, seed: int = 0):
    torch.manual_seed(seed)
    m = GaussianSQ(D, K, var_type=var_type, log_var_init=math.log(2.5))
    z = torch.randn(B, D, H, W)
    lv = None if var_type == "I" else 0.5 * torch.randn(B, m.log_var_channels, H, W)
    if var_type == "II":
        lv = 0.5 * torch.randn(B, 1, 1, 1)
    return m, z, lv


def _explicit_variance(m: GaussianSQ, lv) -> torch.Tensor:
    """Sigma per (b, h, w, d), built independently from Table 1 and the documented convention."""
    s2 = math.exp(m.log_param_q.item())
    if m.var_type == "I":
        return torch.full((B, H, W, D), s2)
    return torch.exp(lv + math.log(s2)).expand(B, -1, H, W).permute(0, 2, 3, 1).expand(B, H, W, D)


def _explicit_logits(m: GaussianSQ, z, lv) -> torch.Tensor:
    var = _explicit_variance(m, lv)  # (B, H, W, D)
    zz = z.permute(0, 2, 3, 1)  # (B, H, W, D)
    diff = zz[..., None, :] - m.codebook.detach()[None, None, None]  # (B, H, W, K, D)
    return -0.5 * (diff.pow(2) / var[..., None, :]).sum(-1)


@pytest.mark.parametrize("var_type", ["I", "II", "III", "IV"])
def test_logits_are_minus_half_mahalanobis_distance(var_type):
    m, z, lv = _setup(var_type)
    got = m.logits(z, lv)
    assert got.shape == (B, H, W, K)
    torch.testing.assert_close(got, _explicit_logits(m, z, lv), rtol=1e-5, atol=1e-5)


def test_type_I_uses_s2_alone_not_one_plus_s2():
    m, z, _ = _setup("I")
    with torch.no_grad():
        m.log_param_q.fill_(math.log(0.3))
    d = ((z.permute(0, 2, 3, 1)[..., None, :] - m.codebook.detach()) ** 2).sum(-1)
    torch.testing.assert_close(m.logits(z), -d / (2 * 0.3), rtol=1e-5, atol=1e-5)


def test_type_II_averages_a_per_position_head_over_valid_positions():
    m, z, _ = _setup("II")
    lv = torch.randn(B, 1, H, W)
    mask = torch.ones(B, H, W, dtype=torch.bool)
    mask[1, 2:] = False
    inst = torch.stack([lv[b, 0][mask[b]].mean() for b in range(B)]).reshape(B, 1, 1, 1)
    torch.testing.assert_close(m.logits(z, lv, mask), m.logits(z, inst), rtol=1e-5, atol=1e-5)


def test_log_var_channels_per_type():
    assert [GaussianSQ(D, K, t).log_var_channels for t in ("I", "II", "III", "IV")] == [0, 1, 1, D]
    with pytest.raises(ValueError):
        GaussianSQ(D, K, "III")(torch.randn(B, D, H, W))  # head missing


@pytest.mark.parametrize("var_type", ["I", "IV"])
def test_objective_is_weighted_error_minus_untempered_entropy(var_type):
    m, z, lv = _setup(var_type)
    m.train()
    m.set_temperature(0.2)  # the entropy must not see the temperature
    out = m(z, lv)
    var = _explicit_variance(m, lv)
    zq = out.quantized.detach().permute(0, 2, 3, 1)
    cont = ((z.permute(0, 2, 3, 1) - zq) ** 2 / var).sum() / 2 / B
    p = torch.softmax(_explicit_logits(m, z, lv), -1)
    ent = -(p * p.log()).sum() / B
    assert set(out.terms) == {"continuous", "entropy_l1"}
    torch.testing.assert_close(out.terms["continuous"], cont, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.terms["entropy_l1"], ent, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, cont - ent, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(out.stats["entropy_l1"]), ent / (H * W), rtol=1e-5, atol=1e-6)


def test_training_feeds_the_soft_gumbel_mixture():
    m, z, _ = _setup("I")
    m.train()
    m.set_temperature(0.7)
    torch.manual_seed(123)
    out = m(z)
    torch.manual_seed(123)
    logits = m.logits(z).reshape(-1, K)
    u = torch.rand_like(logits).clamp(torch.finfo(torch.float32).eps, 1 - torch.finfo(torch.float32).eps)
    enc = torch.softmax((logits - torch.log(-torch.log(u))) / 0.7, -1)
    expected = (enc @ m.codebook).reshape(B, H, W, D).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.quantized, expected, rtol=1e-5, atol=1e-5)
    # soft: not a codeword
    dist = ((out.quantized.permute(0, 2, 3, 1)[..., None, :] - m.codebook) ** 2).sum(-1).min(-1).values
    assert dist.max() > 1e-3


@pytest.mark.parametrize("var_type", ["I", "III"])
def test_eval_is_deterministic_argmin_of_distance(var_type):
    m, z, lv = _setup(var_type)
    m.eval()
    a, b = m(z, lv), m(z, lv)
    torch.testing.assert_close(a.quantized, b.quantized, rtol=0, atol=0)
    assert torch.equal(a.codes, b.codes)
    expected = (-_explicit_logits(m, z, lv)).argmin(-1)
    assert torch.equal(a.codes[:, 0], expected)
    assert torch.equal(m.encode(z, lv), a.codes)
    torch.testing.assert_close(m.decode(a.codes), a.quantized)
    assert a.codes.shape == (B, 1, H, W) and a.codes.dtype == torch.long


@pytest.mark.parametrize("var_type", ["I", "II", "III", "IV"])
def test_gradients_reach_encoder_codebook_variance_and_head(var_type):
    m, z, lv = _setup(var_type)
    m.train()
    z.requires_grad_(True)
    if lv is not None:
        lv.requires_grad_(True)
    out = m(z, lv)
    (out.loss + (out.quantized * torch.randn_like(out.quantized)).sum()).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert m.codebook.grad is not None and (m.codebook.grad.abs().sum(-1) > 0).all()
    assert m.log_param_q.grad is not None and m.log_param_q.grad.abs() > 0
    if lv is not None:
        assert lv.grad is not None and lv.grad.abs().sum() > 0


def test_decoder_input_gradient_reaches_variance_without_loss():
    """No stop-gradient: the decoder-side gradient alone flows into s^2 through the soft mixture."""
    m, z, _ = _setup("I")
    m.train()
    out = m(z)
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    assert m.log_param_q.grad.abs() > 0


@pytest.mark.parametrize("training", [True, False])
def test_mask_excludes_positions(training):
    m, z, lv = _setup("IV")
    m.train(training)
    mask = torch.ones(B, H, W, dtype=torch.bool)
    mask[0, -1] = False
    mask[1, :2] = False
    z2, lv2 = z.clone(), lv.clone()
    z2[~mask.unsqueeze(1).expand_as(z)] = 100.0
    lv2[~mask.unsqueeze(1).expand_as(lv)] = -5.0
    torch.manual_seed(5)
    a = m(z, lv, mask=mask)
    torch.manual_seed(5)
    b = m(z2, lv2, mask=mask)
    torch.testing.assert_close(a.loss, b.loss)
    for k in a.stats:
        assert a.stats[k] == pytest.approx(b.stats[k], rel=1e-6, abs=1e-9)
    # a fully masked sample contributes nothing: loss(batch) == loss(sample 0 alone) / 2 in eval
    if not training:
        mask_all = torch.ones(B, H, W, dtype=torch.bool)
        mask_all[1] = False
        full = m(z, lv, mask=mask_all).loss
        alone = m(z[:1], lv[:1]).loss
        torch.testing.assert_close(full, alone / 2)


def test_fp32_under_autocast():
    m, z, lv = _setup("IV")
    m.eval()
    ref = m(z, lv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m(z, lv)
    assert got.loss.dtype == torch.float32
    torch.testing.assert_close(got.loss, ref.loss, rtol=1e-6, atol=1e-6)
