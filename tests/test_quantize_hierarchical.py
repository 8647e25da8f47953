"""SQ-VAE-2 (HQ-VAE eq. 6) and hybrid (eq. 26): term structure, top-down state, codes, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sqcodec.quantize import HierarchicalSQ, InjectedTopDownLayer

B, D, K = 2, 3, 4


def _model(per_res, s2, spatial_dims=2, seed=0):
    torch.manual_seed(seed)
    m = HierarchicalSQ(D, [5, 6], K, per_res, spatial_dims=spatial_dims, hidden_channels=7)
    with torch.no_grad():
        i = 0
        for g in m.groups:
            for j in range(g.num_layers):
                g.quantizer.log_param_q[j] = torch.tensor(s2[i]).log()
                i += 1
    if spatial_dims == 2:
        feats = [torch.randn(B, 5, 2, 3), torch.randn(B, 6, 4, 6)]
    else:
        feats = [torch.randn(B, 5, 3), torch.randn(B, 6, 6)]
    return m, feats


def test_sqvae2_one_continuous_term_per_layer_with_its_own_variance():
    s2 = [0.7, 1.9]
    m, feats = _model([1, 1], s2)
    m.eval()
    out = m(feats)
    assert set(out.terms) == {"continuous_r1", "continuous_r2", "entropy_l1", "entropy_l2"}
    # independent recomputation of Z^_l from the blocks and of eq. 6
    g1 = m.groups[0].block(feats[0])
    z1 = m.groups[0].quantizer.decode(m.groups[0].quantizer.encode(g1))
    up = F.interpolate(z1, size=(4, 6), mode="nearest")
    g2 = m.groups[1].block(torch.cat([up, feats[1]], 1))
    z2 = m.groups[1].quantizer.decode(m.groups[1].quantizer.encode(g2))
    torch.testing.assert_close(out.terms["continuous_r1"], ((g1 - z1) ** 2).sum() / (2 * s2[0]) / B)
    torch.testing.assert_close(out.terms["continuous_r2"], ((g2 - z2) ** 2).sum() / (2 * s2[1]) / B)
    torch.testing.assert_close(out.quantized, up + z2)
    ent = out.terms["entropy_l1"] + out.terms["entropy_l2"]
    torch.testing.assert_close(out.loss, out.terms["continuous_r1"] + out.terms["continuous_r2"] - ent)


def test_hybrid_one_continuous_term_per_resolution_group_with_summed_variances():
    s2 = [0.7, 0.4, 2.2]
    m, feats = _model([1, 2], s2)
    m.eval()
    out = m(feats)
    assert set(out.terms) == {"continuous_r1", "continuous_r2", "entropy_l1", "entropy_l2", "entropy_l3"}
    assert len(out.layers) == 3 and out.codes.shape == (B, 2, 4, 6)
    g2 = out.encoded[1]
    group_err = ((g2 - out.layers[1] - out.layers[2]) ** 2).sum()
    torch.testing.assert_close(out.terms["continuous_r2"], group_err / (2 * (s2[1] + s2[2])) / B)
    # not the per-layer (naive eq. 10) form inside the group
    naive = ((g2 - out.layers[1]) ** 2).sum() / (2 * s2[1]) / B + group_err / (2 * s2[2]) / B
    assert not torch.allclose(out.terms["continuous_r2"], naive, rtol=1e-2)
    # entropy of layer 3 uses s_3^2 on the residual G^_2 - Z_2
    r3 = (g2 - out.layers[1]).permute(0, 2, 3, 1)
    d = ((r3[..., None, :] - m.groups[1].quantizer.codebook(1).detach()) ** 2).sum(-1)
    p = torch.softmax(-d / (2 * s2[2]), -1)
    torch.testing.assert_close(out.terms["entropy_l3"], -(p * p.log()).sum() / B, rtol=1e-4, atol=1e-5)
    for i in (1, 2, 3):
        assert out.stats[f"var_l{i}"] == pytest.approx(s2[i - 1], rel=1e-6)


@pytest.mark.parametrize("spatial_dims", [1, 2])
def test_decode_of_codes_rebuilds_the_eval_state(spatial_dims):
    m, feats = _model([1, 2], [1.0, 1.0, 1.0], spatial_dims=spatial_dims)
    m.eval()
    out = m(feats)
    codes = m.encode(feats)
    assert [c.shape[1] for c in codes] == [1, 2]
    for a, b in zip(codes, out.codes_per_resolution, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(m.decode(codes), out.quantized)
    torch.testing.assert_close(m(feats).quantized, out.quantized, rtol=0, atol=0)
    assert m.codebook_sizes == [K, K, K] and m.num_layers == 3


def test_gradients_reach_features_blocks_codebooks_and_all_variances():
    m, feats = _model([1, 2], [1.0, 0.5, 0.3])
    m.train()
    for f in feats:
        f.requires_grad_(True)
    out = m(feats)
    (out.loss + (out.quantized * torch.randn_like(out.quantized)).sum()).backward()
    assert all(f.grad.abs().sum() > 0 for f in feats)
    for g in m.groups:
        assert (g.quantizer.log_param_q.grad.abs() > 0).all()
        assert all(cb.grad.abs().sum() > 0 for cb in g.quantizer.codebooks)
        assert g.block[0].weight.grad.abs().sum() > 0


def test_temperature_of_the_path_drives_every_group():
    m, feats = _model([1, 1], [1.0, 1.0])
    m.train()
    outs = []
    for tau in (1e-4, 10.0):
        m.set_temperature(tau)
        torch.manual_seed(0)
        outs.append(m(feats))
    # near-hard at tiny tau: Z_2 is (almost) a codeword of layer 2
    cb = m.groups[1].quantizer.codebook(0).detach()
    for out, hard in zip(outs, (True, False), strict=True):
        z2 = out.layers[1].detach().permute(0, 2, 3, 1)
        gap = ((z2[..., None, :] - cb) ** 2).sum(-1).min(-1).values.max()
        assert (gap < 1e-6) == hard


def test_injected_layer_requires_state_except_first():
    layer = InjectedTopDownLayer(4, D, K, has_state=True)
    with pytest.raises(ValueError):
        layer(None, torch.randn(1, 4, 2, 2))
