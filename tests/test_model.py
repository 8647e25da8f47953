"""The ELBO objective (sqcodec.objective) and the codec model (sqcodec.model).

The model tests use a tiny deterministic nearest-neighbour stand-in with the quantizer contract of
sqcodec.quantize.base; the real SQ quantizers are exercised when ``build_quantizer`` is available.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from sqcodec.model import CodecModel, ModelOutput, build_model
from sqcodec.nets import CodecDecoder, CodecEncoder, SpeechDecoder, SpeechEncoder
from sqcodec.objective import (
    ReconstructionLoss,
    arelbo,
    build_reconstruction,
    element_mask,
    fixed_variance,
)
from sqcodec.quantize.base import Quantizer, QuantizerOutput, from_rows, row_mask, to_rows
from sqcodec.quantize.temperature import TemperatureSchedule

torch.set_num_threads(1)

try:
    from sqcodec.quantize import build_quantizer
except ImportError:  # the quantizer package has not landed yet
    build_quantizer = None


# ---------------------------------------------------------------------------- stand-in quantizer
class NearestNeighbour(Quantizer):
    """Deterministic nearest-neighbour quantizer with straight-through gradients (test stand-in)."""

    def __init__(self, dim: int = 4, codebook_size: int = 8, log_var_channels: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))
        self._lv = log_var_channels
        self.last_mask = None
        self.last_log_var = None

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook.shape[0]]

    @property
    def log_var_channels(self) -> int:
        return self._lv

    def _codes(self, z: Tensor) -> Tensor:
        return torch.cdist(to_rows(z), self.codebook).argmin(-1)

    def forward(self, z, log_var=None, mask=None):
        self.last_mask, self.last_log_var = mask, log_var
        idx = self._codes(z)
        q = from_rows(self.codebook[idx], z.shape)
        w = row_mask(mask, z)
        err = ((to_rows(z) - to_rows(q.detach())) ** 2).sum(-1)
        loss = 0.25 * (err if w is None else err * w).sum() / z.shape[0]
        codes = idx.reshape(z.shape[0], 1, *z.shape[2:])
        return QuantizerOutput(
            quantized=z + (q - z).detach(),
            codes=codes,
            loss=loss,
            terms={"commitment": loss},
            stats={"perplexity_l1": 1.0},
        )

    def encode(self, z, log_var=None, layers=None):
        return self._codes(z).reshape(z.shape[0], 1, *z.shape[2:])

    def decode(self, codes):
        b, _, *s = codes.shape
        return from_rows(self.codebook[codes[:, 0].reshape(-1)], (b, self.dim, *s))


# ---------------------------------------------------------------------------- ARELBO
def _data(b=3, c=5, t=7, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(b, c, t, generator=g, dtype=dtype).requires_grad_(True)
    target = torch.randn(b, c, t, generator=g, dtype=dtype)
    return pred, target


def test_arelbo_value_and_gradient_match_the_formula():
    pred, target = _data()
    out = arelbo(pred, target)
    sse = ((pred - target) ** 2).sum().detach()
    n, b = pred.numel(), pred.shape[0]
    d = n / b
    torch.testing.assert_close(out.loss.detach(), d / 2 * torch.log(sse / n))
    assert out.sigma2 == pytest.approx(float(sse / n)) and out.mse == pytest.approx(float(sse / n))
    out.loss.backward()
    torch.testing.assert_close(pred.grad, d / 2 * 2 * (pred - target).detach() / sse)


def test_arelbo_pools_sigma_over_the_batch_not_per_sample():
    pred, target = _data(b=4)
    with torch.no_grad():
        pred[0] = target[0] + 1e-4 * (pred[0] - target[0])  # a near-silent (near-perfect) crop
    out = arelbo(pred, target)
    out.loss.backward()
    g_pooled = pred.grad.clone()
    # per-sample log (what we must NOT compute): mean_b (D_b/2) log(SSE_b / D_b)
    pred.grad = None
    sse_b = ((pred - target) ** 2).flatten(1).sum(1)
    d = pred[0].numel()
    (d / 2 * torch.log(sse_b / d)).mean().backward()
    g_per_sample = pred.grad
    # pooled: every element weighted by the same 1/SSE, so the near-silent item gets a tiny gradient
    err = (pred - target).detach()
    ratio_pooled = g_pooled[0].norm() / g_pooled[1].norm()
    torch.testing.assert_close(ratio_pooled, err[0].norm() / err[1].norm())
    # per-sample: each item's gradient is normalised by its own SSE -> the silent item dominates
    assert g_per_sample[0].norm() > 100 * g_per_sample[1].norm()
    assert not torch.allclose(g_pooled, g_per_sample)


@pytest.mark.parametrize("kind", ["frame", "element"])
def test_arelbo_masks_exclude_padding(kind):
    pred, target = _data(b=2, c=3, t=6)
    frames = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    mask = frames if kind == "frame" else frames[:, None, :].expand(2, 3, 6)
    out = arelbo(pred, target, mask)
    valid = frames[:, None, :].expand_as(pred)
    n = int(valid.sum())
    sse = ((pred - target) ** 2)[valid].sum()
    assert float(out.count) == n
    torch.testing.assert_close(out.loss, (n / 2) / 2 * torch.log(sse / n))
    out.loss.backward()
    assert (pred.grad[~valid] == 0).all()
    # garbage in the padding changes nothing
    pred2 = pred.detach().clone()
    pred2[~valid] = 1e6
    torch.testing.assert_close(arelbo(pred2, target, mask).loss, out.loss.detach())


def test_element_mask_frame_mask_broadcasts_over_the_last_axis():
    like = torch.zeros(2, 1, 4, 5)
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    w = element_mask(m, like)
    assert w.shape == like.shape and w[0, 0, :, 3:].sum() == 0 and w[1].sum() == 20
    with pytest.raises(ValueError):
        element_mask(torch.ones(2, 4, dtype=torch.bool), like)


def test_arelbo_is_fp32_under_autocast():
    pred, target = _data(dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = arelbo(pred, target)
    assert out.loss.dtype == torch.float32
    ref = arelbo(pred.float(), target.float())
    torch.testing.assert_close(out.loss, ref.loss)


def test_fixed_variance_term():
    pred, target = _data()
    out = fixed_variance(pred, target, sigma2=0.1)
    sse = ((pred - target) ** 2).sum()
    torch.testing.assert_close(out.loss, sse / (2 * 0.1 * 3))
    with pytest.raises(ValueError):
        fixed_variance(pred, target, sigma2=0.0)


def test_build_reconstruction():
    assert build_reconstruction(None).kind == "arelbo"
    loss = build_reconstruction({"type": "mse", "sigma2": 10.0})
    assert loss.kind == "mse" and loss.sigma2 == 10.0
    with pytest.raises(ValueError):
        build_reconstruction({"type": "l1"})
    with pytest.raises(ValueError):
        build_reconstruction({"type": "arelbo", "sigam2": 1})


# ---------------------------------------------------------------------------- ARELBO under DDP
def _ddp_batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, 6, generator=g, dtype=torch.float64)
    target = torch.randn(4, 3, 6, generator=g, dtype=torch.float64)
    x[1] *= 1e-3  # make per-rank SSEs very different
    target[1] *= 1e-3
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[2, 3:] = False
    mask[3, 1:] = False
    return x, target, mask


def _ddp_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv1d(3, 3, 3, padding=1).double()


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str, splits: list) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        x, target, mask = _ddp_batch()
        results = {}
        for name, bounds in splits:
            lo, hi = bounds[rank]
            for use_mask in (False, True):
                net = nn.parallel.DistributedDataParallel(_ddp_net())
                m = mask[lo:hi] if use_mask else None
                out = arelbo(net(x[lo:hi]), target[lo:hi], m)
                out.loss.backward()
                results[(name, use_mask)] = (
                    out.loss.detach(),
                    [p.grad.clone() for p in net.module.parameters()],
                    out.sigma2,
                )
        if rank == 0:  # evaluation on one rank under no_grad: must not enter a collective
            with torch.no_grad():
                local = arelbo(_ddp_net()(x[:1]), target[:1])
            results["no_grad"] = (local.sigma2, local.mse)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_arelbo_ddp_gradient_equals_single_process_gradient():
    splits = [("halves", [(0, 2), (2, 4)]), ("uneven", [(0, 1), (1, 4)])]
    with tempfile.TemporaryDirectory() as tmp:
        # fork on Linux (no re-import of torch in the children: ~4x faster); spawn elsewhere
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        mp.start_processes(
            _ddp_worker, args=(2, os.path.join(tmp, "init"), tmp, splits), nprocs=2, start_method=method
        )
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    x, target, mask = _ddp_batch()
    for name, _ in splits:
        for use_mask in (False, True):
            net = _ddp_net()
            out = arelbo(net(x), target, mask if use_mask else None)
            out.loss.backward()
            for r in range(2):
                loss_r, grads_r, sigma2_r = ranks[r][(name, use_mask)]
                torch.testing.assert_close(loss_r, out.loss.detach(), atol=1e-6, rtol=1e-6)
                assert sigma2_r == pytest.approx(out.sigma2, rel=1e-9)
                for g_r, p in zip(grads_r, net.parameters(), strict=True):
                    torch.testing.assert_close(g_r, p.grad, atol=1e-6, rtol=1e-6)
    sigma2_local, mse_local = ranks[0]["no_grad"]
    assert sigma2_local == mse_local  # the local pooled value (the global one differs)


# ---------------------------------------------------------------------------- the model
def _codec_model(lv: int = 0, reconstruction=None, temperature=None) -> CodecModel:
    torch.manual_seed(0)
    q = NearestNeighbour(dim=4, codebook_size=8, log_var_channels=lv)
    enc = CodecEncoder(d_b=4, log_var_channels=lv, channels=8, frame_dilations=(1,), latent_dilations=(1, 2))
    dec = CodecDecoder(d_b=4, channels=8, frame_dilations=(1,), latent_dilations=(1, 2))
    return CodecModel(enc, q, dec, reconstruction, temperature)


def test_model_forward_structure():
    model = _codec_model()
    x = torch.randn(2, 80, 11)
    out = model({"x": x})
    assert isinstance(out, ModelOutput)
    assert out.reconstruction.shape == x.shape and torch.equal(out.target, x)
    assert set(out.terms) == {"reconstruction", "commitment"}
    torch.testing.assert_close(out.loss, out.terms["reconstruction"] + out.terms["commitment"])
    torch.testing.assert_close(out.terms["reconstruction"], arelbo(out.reconstruction, x).loss)
    assert {"sigma2", "mse", "perplexity_l1"} <= set(out.stats)
    assert all(isinstance(v, float) for v in out.stats.values())
    assert out.codes.shape == (2, 1, 6)
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_model_splits_the_variance_head():
    model = _codec_model(lv=1)
    assert model.encoder.out_channels == 5
    model({"x": torch.randn(1, 80, 8)})
    assert model.quantizer.last_log_var.shape == (1, 1, 4)
    with pytest.raises(ValueError, match="log_var_channels"):
        CodecModel(
            CodecEncoder(d_b=4, channels=8), NearestNeighbour(4, 8, 1), CodecDecoder(d_b=4, channels=8)
        )


def test_model_masks_reach_quantizer_and_objective():
    model = _codec_model(reconstruction=ReconstructionLoss("mse", sigma2=0.5))
    x = torch.randn(2, 80, 10)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 5:] = False
    out = model({"x": x, "mask": mask})
    assert model.quantizer.last_mask.tolist() == [[True] * 5, [True, True, True, False, False]]
    expected = fixed_variance(out.reconstruction, x, 0.5, mask)
    torch.testing.assert_close(out.terms["reconstruction"], expected.loss)
    assert out.stats["mse"] == pytest.approx(expected.mse)


def test_model_set_step_sets_the_temperature():
    model = _codec_model(temperature=TemperatureSchedule(tau0=2.0, decay=1e-3, tau_min=0.5))
    assert float(model.quantizer.temperature) == pytest.approx(2.0)
    assert model.set_step(1000) == pytest.approx(2.0 * math.exp(-1.0))
    assert float(model.quantizer.temperature) == pytest.approx(2.0 * math.exp(-1.0))
    model.set_step(10**6)
    assert float(model.quantizer.temperature) == pytest.approx(0.5)


def test_model_eval_path_is_deterministic_and_restores_modes():
    torch.manual_seed(0)
    q = NearestNeighbour(dim=4, codebook_size=8)
    model = CodecModel(
        SpeechEncoder(d_b=4, channels=8), q, SpeechDecoder(d_b=4, n_speakers=2, speaker_dim=3, hidden=8)
    )
    model.train()
    x = torch.randn(2, 80, 18)
    spk = torch.tensor([0, 1])
    codes = model.encode(x)
    assert codes.shape == (2, 1, 8)
    assert model.training and model.encoder.net[1].training
    a = model.reconstruct(x, speaker=spk)
    b = model.reconstruct(x, speaker=spk)
    assert a.shape == (2, 80, 16) and torch.equal(a, b)
    torch.testing.assert_close(model.decode(codes, speaker=spk), a)
    model.eval()
    out1, out2 = model({"x": x, "speaker": spk}), model({"x": x, "speaker": spk})
    assert torch.equal(out1.reconstruction, out2.reconstruction)
    torch.testing.assert_close(out1.reconstruction, a)
    assert torch.equal(out1.target, x[:, :, 1:-1])


def test_model_speech_training_forward_with_mask():
    torch.manual_seed(0)
    model = CodecModel(
        SpeechEncoder(d_b=4, channels=8), NearestNeighbour(4, 8), SpeechDecoder(d_b=4, n_speakers=0, hidden=8)
    )
    x = torch.randn(2, 80, 18)
    mask = torch.ones(2, 18, dtype=torch.bool)
    mask[1, 11:] = False  # 10 valid target frames -> 5 latents
    out = model({"x": x, "mask": mask})
    assert model.quantizer.last_mask[1].tolist() == [True] * 5 + [False] * 3
    expected = arelbo(out.reconstruction, x[:, :, 1:-1], mask[:, 1:-1])
    torch.testing.assert_close(out.terms["reconstruction"], expected.loss)
    out.loss.backward()


def test_model_codec_decode_length_crops():
    model = _codec_model()
    x = torch.randn(1, 80, 13)
    codes = model.encode(x)
    assert codes.shape == (1, 1, 7)
    assert model.decode(codes).shape == (1, 80, 14)
    assert model.decode(codes, length=13).shape == (1, 80, 13)
    assert model.reconstruct(x).shape == x.shape


# ---------------------------------------------------------------------------- build_model
def _cfg(net: str, quantizer: dict) -> dict:
    enc = {
        "speech": {"type": "speech", "channels": 8},
        "urbansound": {"type": "urbansound", "channels": 8, "res_channels": 4},
        "codec": {"type": "codec", "channels": 8, "latent_dilations": [1, 2]},
    }[net]
    dec = {
        "speech": {"type": "speech", "n_speakers": 3, "speaker_dim": 4, "hidden": 8},
        "urbansound": {"type": "urbansound", "channels": 8, "res_channels": 4},
        "codec": {"type": "codec", "channels": 8, "latent_dilations": [1, 2]},
    }[net]
    return {
        "encoder": enc,
        "quantizer": quantizer,
        "decoder": dec,
        "reconstruction": {"type": "arelbo"},
        "temperature": {"tau0": 1.0, "decay": 1e-5, "tau_min": 0.0},
    }


_INPUTS = {
    "speech": lambda: {"x": torch.randn(2, 80, 10), "speaker": torch.tensor([0, 2])},
    "urbansound": lambda: {"x": torch.randn(2, 1, 80, 16)},
    "codec": lambda: {"x": torch.randn(2, 80, 9)},
}


@pytest.mark.parametrize("net", ["speech", "urbansound", "codec"])
def test_build_model_with_stand_in_quantizer(net, monkeypatch):
    import sqcodec.quantize as qpkg

    monkeypatch.setattr(qpkg, "build_quantizer", lambda cfg: NearestNeighbour(cfg["dim"], 8), raising=False)
    cfg = _cfg(net, {"type": "nn", "dim": 4})
    model = build_model(cfg)
    batch = _INPUTS[net]()
    out = model(batch)
    assert out.reconstruction.shape == out.target.shape
    assert model.config == cfg and model.config is not cfg
    model.eval()
    assert torch.equal(model(batch).reconstruction, model(batch).reconstruction)


def test_build_model_rejects_bad_config(monkeypatch):
    import sqcodec.quantize as qpkg

    monkeypatch.setattr(qpkg, "build_quantizer", lambda cfg: NearestNeighbour(cfg["dim"], 8), raising=False)
    with pytest.raises(ValueError, match="unknown model config"):
        build_model({**_cfg("codec", {"type": "nn", "dim": 4}), "optimizer": {}})
    bad = _cfg("codec", {"type": "nn", "dim": 4})
    bad["encoder"]["d_b"] = 5
    with pytest.raises(ValueError, match="d_b"):
        build_model(bad)
    bad = _cfg("codec", {"type": "nn", "dim": 4})
    bad["encoder"]["type"] = "wavenet"
    with pytest.raises(ValueError, match="encoder type"):
        build_model(bad)


# ---------------------------------------------------------------------------- with the real quantizers
needs_quantizers = pytest.mark.skipif(
    build_quantizer is None, reason="sqcodec.quantize.build_quantizer missing"
)

_REAL = {
    "residual_sq": {"type": "residual_sq", "dim": 4, "codebook_size": 8, "num_layers": 3},
    "gaussian_sq_I": {"type": "gaussian_sq", "dim": 4, "codebook_size": 8, "var_type": "I"},
    "gaussian_sq_III": {"type": "gaussian_sq", "dim": 4, "codebook_size": 8, "var_type": "III"},
    "gaussian_sq_IV": {"type": "gaussian_sq", "dim": 4, "codebook_size": 8, "var_type": "IV"},
    "vmf_sq": {"type": "vmf_sq", "dim": 4, "codebook_size": 8},
    "vq": {"type": "vq", "dim": 4, "codebook_size": 8},
    "residual_vq": {"type": "residual_vq", "dim": 4, "codebook_size": 8, "num_layers": 2},
}


@needs_quantizers
@pytest.mark.parametrize("net", ["speech", "urbansound", "codec"])
@pytest.mark.parametrize("quantizer", ["residual_sq", "gaussian_sq_IV"])
def test_build_model_with_real_sq_quantizers(net, quantizer):
    torch.manual_seed(0)
    model = build_model(_cfg(net, _REAL[quantizer]))
    q = model.quantizer
    assert model.encoder.out_channels == q.dim + q.log_var_channels
    batch = _INPUTS[net]()
    model.train()
    out = model(batch)
    assert out.reconstruction.shape == out.target.shape
    with torch.no_grad():  # loss = reconstruction term + quantizer loss (checked on the deterministic path)
        model.eval()
        ev = model(batch)
        z, log_var = model._split(model.encoder(batch["x"]))
        torch.testing.assert_close(ev.loss, ev.terms["reconstruction"] + q(z, log_var=log_var).loss)
        model.train()
    assert {"sigma2", "mse", "var_l1", "entropy_l1", "perplexity_l1"} <= set(out.stats)
    out.loss.backward()
    assert all(p.grad is not None for p in q.parameters())
    model.set_step(100_000)
    assert float(q.temperature) == pytest.approx(math.exp(-1.0))
    # deterministic inference path, per-layer truncation for the residual quantizer
    a = model.reconstruct(batch["x"], speaker=batch.get("speaker"))
    b = model.reconstruct(batch["x"], speaker=batch.get("speaker"))
    assert torch.equal(a, b) and a.shape == out.target.shape
    codes = model.encode(batch["x"])
    assert codes.shape[1] == q.num_layers
    if q.num_layers > 1:
        assert torch.equal(model.encode(batch["x"], layers=2), codes[:, :2])
        y = model.decode(codes[:, :1], speaker=batch.get("speaker"), length=out.target.shape[-1])
        assert y.shape == out.target.shape


@needs_quantizers
@pytest.mark.parametrize("quantizer", ["gaussian_sq_I", "gaussian_sq_III", "vmf_sq", "vq", "residual_vq"])
def test_build_model_codec_with_every_quantizer(quantizer):
    torch.manual_seed(0)
    model = build_model({**_cfg("codec", _REAL[quantizer]), "reconstruction": {"type": "mse", "sigma2": 1.0}})
    batch = _INPUTS["codec"]()
    out = model(batch)
    out.loss.backward()
    model.eval()
    assert torch.equal(model(batch).reconstruction, model(batch).reconstruction)
    assert model.reconstruct(batch["x"]).shape == batch["x"].shape
