"""vMF SQ (SQ-VAE §3.4, eq. 13-14) and the vMF categorical likelihood (eq. 10-14, 18)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

from sqcodec.quantize import VmfCategoricalLikelihood, VmfSQ, log_bessel_iv, vmf_log_normalizer
from sqcodec.quantize.vmf import mean_resultant_length

B, D, T, K = 2, 4, 5, 6


def test_vmf_logits_objective_and_eval_codes():
    torch.manual_seed(0)
    m = VmfSQ(D, K, log_kappa_init=math.log(3.0))
    z = 3.0 * torch.randn(B, D, T)
    kappa = 1.0 + 3.0
    zn = z / z.norm(dim=1, keepdim=True)
    bn = m.codebook.detach() / m.codebook.detach().norm(dim=1, keepdim=True)
    cos = torch.einsum("bdt,kd->btk", zn, bn)
    torch.testing.assert_close(m.logits(z), kappa * cos)
    m.eval()
    out = m(z)
    assert torch.equal(out.codes[:, 0], cos.argmax(-1))
    torch.testing.assert_close(out.quantized, bn[cos.argmax(-1)].permute(0, 2, 1))
    torch.testing.assert_close(m.decode(out.codes), out.quantized)
    m.train()
    out = m(z)
    cont = (kappa * (1 - (zn * out.quantized.detach()).sum(1))).sum() / B
    p = torch.softmax(kappa * cos, -1)
    torch.testing.assert_close(out.terms["continuous"], cont)
    torch.testing.assert_close(out.terms["entropy_l1"], -(p * p.log()).sum() / B)
    assert out.stats["kappa_l1"] == pytest.approx(kappa)
    # gradients reach codebook, kappa and the encoder
    z.requires_grad_(True)
    out = m(z)
    (out.loss + out.quantized.sum()).backward()
    assert m.codebook.grad.abs().sum() > 0 and m.log_param_q.grad.abs() > 0 and z.grad.abs().sum() > 0


def _finite_difference(fn, k: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    with torch.no_grad():
        return (fn(k + h) - fn(k - h)) / (2 * h)


@pytest.mark.parametrize("v", [0.0, 0.5, 9.0, 31.0])
def test_log_bessel_value_and_gradient_against_finite_differences(v):
    k = torch.tensor([0.3, 4.0, 80.0], dtype=torch.float64, requires_grad=True)
    out = log_bessel_iv(v, k)
    ref = np.log(special.iv(v, k.detach().numpy()))
    torch.testing.assert_close(out, torch.from_numpy(ref), rtol=1e-10, atol=1e-10)
    out.sum().backward()
    fd = _finite_difference(lambda x: log_bessel_iv(v, x), k.detach())
    torch.testing.assert_close(k.grad, fd, rtol=1e-6, atol=1e-7)


def test_log_normalizer_gradient_is_minus_mean_resultant_length():
    for f in (2, 20):
        k = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
        vmf_log_normalizer(k, f).backward()
        assert k.grad.item() == pytest.approx(-mean_resultant_length(7.0, f), rel=1e-9)
        fd = _finite_difference(lambda x, f=f: vmf_log_normalizer(x, f), k.detach())
        torch.testing.assert_close(k.grad, fd, rtol=1e-6, atol=1e-7)


def test_log_bessel_is_finite_where_ive_underflows():
    k = torch.tensor([1e-3, 1e-1], dtype=torch.float64, requires_grad=True)
    out = log_bessel_iv(127.0, k)
    assert torch.isfinite(out).all()
    expected = 127 * torch.log(k.detach() / 2) - math.lgamma(128.0)  # small-argument series
    torch.testing.assert_close(out[0], expected[0], rtol=1e-6, atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(k.grad).all()


def test_class_vector_layouts_are_fixed_unit_vectors():
    oh = VmfCategoricalLikelihood(19, "onehot")
    paired = VmfCategoricalLikelihood(19, "onehot_paired")
    circ = VmfCategoricalLikelihood(256, "circle")
    assert oh.feature_dim == 19 and paired.feature_dim == 20 and circ.feature_dim == 2
    assert torch.equal(paired.class_vectors, torch.eye(20)[:19])
    ang = torch.atan2(circ.class_vectors[:, 1].double(), circ.class_vectors[:, 0].double())
    ang = torch.where(ang < 0, ang + 2 * math.pi, ang)
    torch.testing.assert_close(
        ang, math.pi * torch.arange(1, 257, dtype=torch.float64) / 256, atol=1e-6, rtol=0
    )
    for m in (oh, paired, circ):
        torch.testing.assert_close(m.class_vectors.norm(dim=1), torch.ones(m.num_classes))
        assert [n for n, _ in m.named_parameters()] == ["log_kappa_inv"]


def test_likelihood_value():
    torch.manual_seed(0)
    m = VmfCategoricalLikelihood(5, "onehot", log_kappa_inv_init=math.log(0.1))
    f = torch.randn(B, 5, 3, 3)
    x = torch.randint(0, 5, (B, 3, 3))
    mask = torch.ones(B, 3, 3, dtype=torch.bool)
    mask[1, 0] = False
    kappa = 1 / (0.1 + 1e-9)
    fn = f / f.norm(dim=1, keepdim=True)
    cos = fn.gather(1, x[:, None]).squeeze(1)
    logc = (5 / 2 - 1) * math.log(kappa) - math.log(special.iv(5 / 2 - 1, kappa))
    expected = (-kappa * cos[mask].sum() - mask.sum() * logc) / B
    torch.testing.assert_close(m(f, x, mask), expected.float(), rtol=1e-5, atol=1e-4)
    assert torch.equal(m.predict(f), fn.argmax(1))


def test_kappa_stays_bounded_when_trained_alone_and_diverges_without_log_c():
    torch.manual_seed(0)
    c, f_dim = 4, 4
    x = torch.randint(0, c, (8, 16))
    f = torch.eye(c)[x].movedim(-1, 1) + 0.6 * torch.randn(8, c, 16)
    fn = f / f.norm(dim=1, keepdim=True)
    rbar = fn.gather(1, x[:, None]).mean().item()
    # kappa* solves A_F(kappa) = mean cosine (stationary point of the NLL)
    lo, hi = 1e-3, 1e4
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if mean_resultant_length(mid, f_dim) < rbar else (lo, mid)
    kappa_star = lo

    def train(with_log_c: bool) -> float:
        m = VmfCategoricalLikelihood(c, "onehot", log_kappa_inv_init=0.0)
        theta = m.log_kappa_inv
        mom = vel = 0.0  # a hand-written Adam on the single parameter (lr 0.1)
        for step in range(1, 151):
            loss = m(f, x)
            if not with_log_c:
                loss = loss + x.numel() * m.log_normalizer() / f.shape[0]
            (g,) = torch.autograd.grad(loss, theta)
            mom = 0.9 * mom + 0.1 * g.item()
            vel = 0.999 * vel + 0.001 * g.item() ** 2
            with torch.no_grad():
                theta -= 0.1 * (mom / (1 - 0.9**step)) / (math.sqrt(vel / (1 - 0.999**step)) + 1e-8)
        return m.kappa().item()

    assert train(True) == pytest.approx(kappa_star, rel=0.05)
    assert train(False) > 100 * kappa_star
