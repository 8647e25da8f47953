"""VQ-VAE / RQ-VAE baselines: EMA update, straight-through, eq. 15 commitment, resets, no codebook grad."""

from __future__ import annotations

import pytest
import torch

from sqcodec.quantize import ResidualVQ, VectorQuantizerEMA

B, D, T, K = 2, 3, 6, 5


def _data(seed=0):
    torch.manual_seed(seed)
    return torch.randn(B, D, T)


def _nearest(rows, cb):
    return ((rows[:, None, :] - cb[None]) ** 2).sum(-1).argmin(-1)


def test_ema_update_follows_laplace_smoothed_formula_and_moves_toward_assigned_means():
    z = _data()
    m = VectorQuantizerEMA(D, K, decay=0.9, eps=1e-5)
    e0 = m.codebook.clone()
    rows = z.permute(0, 2, 1).reshape(-1, D)
    idx = _nearest(rows, e0)
    counts = torch.bincount(idx, minlength=K).float()
    sums = torch.zeros(K, D).index_add_(0, idx, rows)
    cs = 0.9 * torch.ones(K) + 0.1 * counts
    avg = 0.9 * e0 + 0.1 * sums
    n = cs.sum()
    expected = avg / ((cs + 1e-5) / (n + K * 1e-5) * n)[:, None]
    m.train()
    out = m(z)
    assert torch.equal(out.codes.reshape(B, T).reshape(-1), idx)
    torch.testing.assert_close(m.codebook, expected)
    used = counts > 0
    means = sums[used] / counts[used, None]
    assert ((m.codebook[used] - means).norm(dim=-1) < (e0[used] - means).norm(dim=-1)).all()


def test_eval_does_not_update_and_mask_excludes_rows():
    z = _data()
    m = VectorQuantizerEMA(D, K).eval()
    e0 = m.codebook.clone()
    m(z)
    assert torch.equal(m.codebook, e0)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 4:] = False
    z2 = z.clone()
    z2[0, :, 4:] = 30.0
    a, b = VectorQuantizerEMA(D, K), VectorQuantizerEMA(D, K)
    b.load_state_dict(a.state_dict())
    oa, ob = a.train()(z, mask=mask), b.train()(z2, mask=mask)
    torch.testing.assert_close(a.codebook, b.codebook)
    torch.testing.assert_close(oa.loss, ob.loss)


def test_straight_through_commitment_and_no_codebook_gradient():
    z = _data().requires_grad_(True)
    m = VectorQuantizerEMA(D, K, beta=0.25).eval()
    out = m(z)
    assert list(m.parameters()) == [] and not m.codebook.requires_grad
    q = m.decode(out.codes)
    torch.testing.assert_close(out.quantized, q)
    torch.testing.assert_close(out.terms["commitment"], 0.25 * ((z - q) ** 2).sum() / B)
    g = torch.randn_like(z)
    (out.quantized * g).sum().backward()
    torch.testing.assert_close(z.grad, g)  # straight-through copies the decoder gradient
    z.grad = None
    m(z).loss.backward()
    torch.testing.assert_close(z.grad, 2 * 0.25 * (z - q).detach() / B)


@pytest.mark.slow  # importing vector_quantize_pytorch takes several seconds
def test_matches_vector_quantize_pytorch_ema_and_rescaled_commitment():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    ref = vqp.VectorQuantize(dim=D, codebook_size=K, decay=0.99, eps=1e-5, commitment_weight=0.25)
    ours = VectorQuantizerEMA(D, K, beta=0.25, decay=0.99, eps=1e-5)
    e = ref._codebook.embed.detach()[0].clone()
    ours.book.embed.copy_(e)
    ours.book.embed_avg.copy_(e)
    x = torch.randn(B, T, D)
    ref.train()
    _, ref_idx, ref_loss = ref(x)
    out = ours.train()(x.transpose(1, 2))
    assert torch.equal(ref_idx, out.codes[:, 0])
    torch.testing.assert_close(ours.codebook, ref._codebook.embed.detach()[0], rtol=1e-5, atol=1e-6)
    # theirs is a mean over elements, ours a per-sample sum: ratio T * D
    torch.testing.assert_close(out.loss, ref_loss.detach().reshape(()) * T * D, rtol=1e-5, atol=1e-6)


def test_batch_reset_moves_dead_codes_to_encoder_outputs():
    z = _data()
    m = VectorQuantizerEMA(D, K, reset_dead_codes=True, reset_mode="batch", dead_threshold=0.5)
    with torch.no_grad():
        m.book.embed[3] = 1e3  # never chosen
        m.book.embed_avg[3] = 1e3
        m.book.cluster_size[3] = 0.1  # already dead
    out = m.train()(z)
    rows = z.permute(0, 2, 1).reshape(-1, D)
    assert out.stats["resets_l1"] >= 1
    assert ((rows - m.codebook[3]).abs().sum(-1) < 1e-6).any()


def test_least_used_reset_every_20_batches_near_most_used():
    torch.manual_seed(0)
    m = VectorQuantizerEMA(D, K, reset_dead_codes=True, reset_every=20, decay=1.0 - 1e-9)
    with torch.no_grad():
        m.book.embed[2] = 1e3
        m.book.embed_avg[2] = 1e3
    m.train()
    z = _data()
    for step in range(20):
        out = m(z)
        assert out.stats["resets_l1"] == (1.0 if step == 19 else 0.0)
    counts = torch.bincount(out.codes.reshape(-1), minlength=K)
    assert (m.codebook[2] - m.codebook[counts.argmax()]).norm() < 1.0


# ------------------------------------------------------------------------------------------- RQ


def _rq(**kw):
    torch.manual_seed(1)
    return ResidualVQ(D, K, 3, **kw)


def test_rq_commitment_uses_cumulative_sums_eq15():
    z = _data()
    m = _rq(beta=0.25).eval()
    out = m(z)
    codes = m.encode(z)
    assert torch.equal(out.codes, codes) and set(out.terms) == {f"commitment_l{i}" for i in (1, 2, 3)}
    for layer in (1, 2, 3):
        cum = m.decode(codes[:, :layer])
        expected = 0.25 * ((z - cum) ** 2).sum() / B
        torch.testing.assert_close(out.terms[f"commitment_l{layer}"], expected)
        if layer > 1:  # not the per-layer codeword alone
            only = 0.25 * ((z - out.layers[layer - 1]) ** 2).sum() / B
            assert not torch.allclose(out.terms[f"commitment_l{layer}"], only)
    # greedy on hard residuals
    r = z.permute(0, 2, 1).reshape(-1, D)
    for i in range(3):
        idx = _nearest(r, m.codebook(i))
        assert torch.equal(idx, codes[:, i].reshape(-1))
        r = r - m.codebook(i)[idx]


def test_rq_truncation_straight_through_and_no_codebook_gradient():
    z = _data().requires_grad_(True)
    m = _rq().eval()
    full = m(z)
    out = m(z, layers=2)
    torch.testing.assert_close(out.quantized, m.decode(full.codes[:, :2]))
    torch.testing.assert_close(out.loss, full.loss)
    assert list(m.parameters()) == []
    g = torch.randn_like(z)
    (out.quantized * g).sum().backward()
    torch.testing.assert_close(z.grad, g)
    # the commitment gradient reaches the encoder through H only: 2 beta sum_l (H - cum_l) / B
    z.grad = None
    m(z).loss.backward()
    expected = sum(2 * 0.25 * (z - m.decode(full.codes[:, :i])).detach() / B for i in (1, 2, 3))
    torch.testing.assert_close(z.grad, expected)


def test_rq_ema_per_layer_uses_residuals():
    z = _data()
    m = _rq(decay=0.5)
    e = [m.codebook(i).clone() for i in range(3)]
    rows = z.permute(0, 2, 1).reshape(-1, D)
    expected = []
    r = rows
    for i in range(3):
        idx = _nearest(r, e[i])
        counts = torch.bincount(idx, minlength=K).float()
        sums = torch.zeros(K, D).index_add_(0, idx, r)
        cs = 0.5 + 0.5 * counts
        avg = 0.5 * e[i] + 0.5 * sums
        n = cs.sum()
        expected.append(avg / ((cs + 1e-5) / (n + K * 1e-5) * n)[:, None])
        r = r - e[i][idx]
    m.train()(z)
    for i in range(3):
        torch.testing.assert_close(m.codebook(i), expected[i])


def test_rq_shared_codebook_gets_statistics_of_all_layers():
    z = _data()
    m = _rq(decay=0.5, shared_codebook=True)
    e = m.codebook(0).clone()
    r = z.permute(0, 2, 1).reshape(-1, D)
    counts, sums = torch.zeros(K), torch.zeros(K, D)
    for _ in range(3):
        idx = _nearest(r, e)
        counts += torch.bincount(idx, minlength=K).float()
        sums.index_add_(0, idx, r)
        r = r - e[idx]
    cs = 0.5 + 0.5 * counts
    n = cs.sum()
    expected = (0.5 * e + 0.5 * sums) / ((cs + 1e-5) / (n + K * 1e-5) * n)[:, None]
    m.train()(z)
    assert len(m.books) == 1
    torch.testing.assert_close(m.codebook(2), expected)


# ------------------------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # identical replicas
        m = VectorQuantizerEMA(D, K, decay=0.5, reset_dead_codes=True, reset_mode="batch", dead_threshold=0.3)
        with torch.no_grad():
            m.book.embed[4] = 1e3
            m.book.embed_avg[4] = 1e3
            m.book.cluster_size[4] = 0.0
        torch.manual_seed(100 + rank)  # different data (and RNG) per rank
        m.train()(torch.randn(B, D, T))
        torch.save(m.book.state_dict(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns two gloo processes
def test_ema_statistics_are_all_reduced_under_ddp(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    s0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    s1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in s0:
        assert torch.equal(s0[key], s1[key]), key  # replicas stay identical (incl. the reset code)
    # the update equals a single-process update on the union of both ranks' batches
    torch.manual_seed(0)
    ref = VectorQuantizerEMA(D, K, decay=0.5)
    e0 = ref.codebook.clone()
    with torch.no_grad():
        e0[4] = 1e3
    rows = []
    for rank in (0, 1):
        torch.manual_seed(100 + rank)
        rows.append(torch.randn(B, D, T).permute(0, 2, 1).reshape(-1, D))
    rows = torch.cat(rows)
    idx = _nearest(rows, e0)
    counts = torch.bincount(idx, minlength=K).float()
    sums = torch.zeros(K, D).index_add_(0, idx, rows)
    cs = 0.5 * torch.ones(K) + 0.5 * counts
    cs[4] = 0.5 * counts[4]
    n = cs.sum()
    expected = (0.5 * e0 + 0.5 * sums) / ((cs + 1e-5) / (n + K * 1e-5) * n)[:, None]
    live = torch.arange(K) != 4
    torch.testing.assert_close(s0["embed"][live], expected[live])
    assert ((rows - s0["embed"][4]).abs().sum(-1) < 1e-6).any()  # reset to an encoder output
