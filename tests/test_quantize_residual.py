"""RSQ-VAE (HQ-VAE eq. 14): one continuous term with sum s_l^2, own s_l^2 in logits, truncation, gradients."""

from __future__ import annotations

import torch

from sqcodec.quantize import ResidualSQ

B, D, T, K, L = 2, 3, 5, 4, 3
S2 = [0.5, 2.0, 1.5]


def _setup(seed: int = 0, **kw) -> tuple[ResidualSQ, torch.Tensor]:
    torch.manual_seed(seed)
    m = ResidualSQ(D, K, L, **kw)
    with torch.no_grad():
        m.log_param_q.copy_(torch.tensor(S2).log())
    return m, 2.0 * torch.randn(B, D, T)


def _greedy(m: ResidualSQ, z: torch.Tensor):
    """Independent greedy argmin on hard residuals with broadcast distances; returns codes and residuals."""
    r = z.permute(0, 2, 1)  # (B, T, D)
    codes, residuals = [], []
    for i in range(L):
        cb = m.codebook(i).detach()
        residuals.append(r)
        idx = ((r[..., None, :] - cb) ** 2).sum(-1).argmin(-1)
        codes.append(idx)
        r = r - cb[idx]
    return codes, residuals, r


def test_continuous_term_is_total_error_over_sum_of_variances_and_appears_once():
    m, z = _setup()
    m.eval()
    out = m(z)
    assert set(out.terms) == {"continuous", "entropy_l1", "entropy_l2", "entropy_l3"}
    _, _, final = _greedy(m, z)
    expected = (final**2).sum() / (2 * sum(S2)) / B
    torch.testing.assert_close(out.terms["continuous"], expected, rtol=1e-5, atol=1e-5)
    ent = sum(out.terms[f"entropy_l{i}"] for i in (1, 2, 3))
    torch.testing.assert_close(out.loss, expected - ent, rtol=1e-5, atol=1e-5)


def test_continuous_term_in_training_uses_the_soft_layers():
    m, z = _setup()
    m.train()
    out = m(z)
    total = torch.stack(out.layers).sum(0)
    expected = ((z - total) ** 2).sum() / (2 * sum(S2)) / B
    torch.testing.assert_close(out.terms["continuous"], expected, rtol=1e-5, atol=1e-5)


def test_not_the_naive_per_layer_objective():
    m, z = _setup()
    m.eval()
    out = m(z)
    codes, residuals, final = _greedy(m, z)
    naive = sum(
        ((residuals[i] - m.codebook(i).detach()[codes[i]]) ** 2).sum() / (2 * S2[i]) / B for i in range(L)
    )
    last_only = (final**2).sum() / (2 * S2[-1]) / B
    assert not torch.allclose(out.terms["continuous"], naive, rtol=1e-2)
    assert not torch.allclose(out.terms["continuous"], last_only, rtol=1e-2)


def test_each_layer_uses_its_own_variance_in_the_logits():
    m, z = _setup()
    m.eval()
    out = m(z)
    _, residuals, _ = _greedy(m, z)
    for i in range(L):
        d = ((residuals[i][..., None, :] - m.codebook(i).detach()) ** 2).sum(-1)
        for s2, should_match in ((S2[i], True), (sum(S2), False)):
            p = torch.softmax(-d / (2 * s2), -1)
            ent = -(p * p.log()).sum() / B
            assert torch.allclose(out.terms[f"entropy_l{i + 1}"], ent, rtol=1e-4) == should_match


def test_truncation_decodes_partial_sums():
    m, z = _setup()
    m.eval()
    codes = m.encode(z)
    assert codes.shape == (B, L, T)
    full = m(z)
    for keep in range(1, L + 1):
        partial = sum(m.codebook(i).detach()[codes[:, i]] for i in range(keep)).permute(0, 2, 1)
        torch.testing.assert_close(m.decode(codes[:, :keep]), partial)
        torch.testing.assert_close(m.decode(m.encode(z, layers=keep)), partial)
        out = m(z, layers=keep)
        torch.testing.assert_close(out.quantized, partial)
        torch.testing.assert_close(out.quantized, sum(full.layers[:keep]))
        assert torch.equal(out.codes, codes[:, :keep])
        # documented choice: the eq. 14 posterior term stays over all L layers under truncation
        torch.testing.assert_close(out.loss, full.loss)


def test_eval_is_deterministic_greedy_argmin():
    m, z = _setup()
    m.eval()
    a, b = m(z), m(z)
    assert torch.equal(a.codes, b.codes)
    torch.testing.assert_close(a.quantized, b.quantized, rtol=0, atol=0)
    codes, _, _ = _greedy(m, z)
    assert torch.equal(a.codes, torch.stack(codes, 1))
    assert torch.equal(m.encode(z), a.codes)


def test_gradients_reach_input_every_codebook_and_every_variance_nothing_detached():
    m, z = _setup()
    m.train()
    z.requires_grad_(True)
    out = m(z)
    (out.loss + (out.quantized * torch.randn_like(out.quantized)).sum()).backward()
    assert z.grad.abs().sum() > 0
    for i in range(L):
        assert m.codebook(i).grad is not None and m.codebook(i).grad.abs().sum() > 0
    assert (m.log_param_q.grad.abs() > 0).all()
    # no detach of residuals: Z_3 depends on z and on codebook 1 through the soft residual r_3
    m.zero_grad()
    z.grad = None
    out = m(z)
    out.layers[2].sum().backward()
    assert z.grad.abs().sum() > 0
    assert m.codebook(0).grad.abs().sum() > 0


def test_shared_codebook_is_one_parameter():
    m, z = _setup(shared_codebook=True)
    assert len(list(m.codebooks)) == 1 and m.codebook(0) is m.codebook(2)
    m.eval()
    out = m(z)
    codes, _, _ = _greedy(m, z)
    assert torch.equal(out.codes, torch.stack(codes, 1))


def test_layer_dropout_truncates_randomly_in_training_only():
    m, z = _setup(layer_dropout=True)
    m.train()
    seen = {m(z).codes.shape[1] for _ in range(12)}
    assert len(seen) > 1 and seen <= set(range(1, L + 1))
    m.eval()
    assert m(z).codes.shape[1] == L
    assert ResidualSQ(D, K, L).train()(z).codes.shape[1] == L  # off by default


def test_stats_per_layer_and_mask():
    m, z = _setup()
    m.train()
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 3:] = False
    z2 = z.clone()
    z2[1, :, 3:] = 50.0
    torch.manual_seed(1)
    a = m(z, mask=mask)
    torch.manual_seed(1)
    b = m(z2, mask=mask)
    for i in range(1, L + 1):
        assert a.stats[f"var_l{i}"] == torch.tensor(S2[i - 1]).item()
        assert 1.0 <= a.stats[f"perplexity_l{i}"] <= K
        assert f"entropy_l{i}" in a.stats
    torch.testing.assert_close(a.loss, b.loss)
    assert a.stats == b.stats
