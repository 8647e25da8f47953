"""Image models: the SQ-VAE ConvResNet layouts, the HQ-VAE bottom-up/top-down nets, the categorical
reconstruction terms, the VQ-VAE-2 top-down path, and every image recipe config (one training step)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sqcodec.model import build_model
from sqcodec.nets.hierarchical import BottomUpEncoder, TopDownDecoder
from sqcodec.nets.image import ConvResDecoder, ConvResEncoder
from sqcodec.objective import build_reconstruction
from sqcodec.quantize import HierarchicalVQ
from sqcodec.train.config import load_config

REPO = Path(__file__).resolve().parents[1]
IMAGE_RECIPES = ("mnist", "fashion_mnist", "cifar10", "celeba", "celeba_mask")
CONFS = sorted(p for c in IMAGE_RECIPES for p in (REPO / "egs" / c / "conf").glob("*.yaml"))


@pytest.mark.parametrize(
    "size, in_ch, down, conv3x3, latent, widths",
    [
        (28, 1, 2, False, 7, [32, 64]),  # E.1 MNIST: Conv 32 -> BN -> ReLU -> Conv 64
        (32, 3, 2, True, 8, [32, 64, 64]),  # E.1 CIFAR10: + Conv3x3 64
        (64, 19, 3, False, 8, [32, 64, 64]),  # E.3 CelebAHQ-Mask: three stride-2 convs
    ],
)
def test_convres_layouts_follow_the_paper(size, in_ch, down, conv3x3, latent, widths):
    enc = ConvResEncoder(64, 0, in_ch, down, conv3x3, n_res_block=2)
    convs = [m for m in enc.trunk if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == widths
    assert [c.stride[0] for c in convs] == [2] * down + [1] * conv3x3
    bns = [m for m in enc.trunk if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(widths) - 1  # no BN/ReLU after the last conv before the ResBlocks
    z = enc(torch.rand(2, in_ch, size, size))
    assert z.shape == (2, 64, latent, latent)
    dec = ConvResDecoder(64, in_ch, down, conv3x3, n_res_block=2)
    y = dec(z).detach()
    assert y.shape == (2, in_ch, size, size) and 0 <= float(y.min()) and float(y.max()) <= 1


def test_variance_heads_for_types_ii_to_iv():
    for lv in (1, 64):
        enc = ConvResEncoder(64, lv, 1, 2)
        assert enc(torch.rand(2, 1, 28, 28)).shape == (2, 64 + lv, 7, 7)
    with pytest.raises(ValueError, match="not divisible by 4"):
        ConvResEncoder(8, 0, 1, 2)(torch.rand(1, 1, 30, 30))


def test_hqvae_bottom_up_features_and_decoder():
    enc = BottomUpEncoder(16, 0, 3, channels=8, n_pool=1, resolutions=2)
    feats = enc(torch.rand(2, 3, 32, 32))
    assert [tuple(f.shape[2:]) for f in feats] == [(8, 8), (16, 16)]  # coarsest first (HQ-VAE F.1.1)
    flat = BottomUpEncoder(16, 0, 3, channels=8, n_pool=1, resolutions=1)
    assert flat(torch.rand(2, 3, 32, 32)).shape == (2, 16, 8, 8)  # RSQ: H(x) at 8x8 (F.2.1)
    assert TopDownDecoder(16, 3, 8, upsample=2)(torch.rand(2, 16, 8, 8)).shape == (2, 3, 32, 32)
    deep = BottomUpEncoder(16, 0, 3, channels=8, n_pool=4, resolutions=3)
    assert [f.shape[-1] for f in deep(torch.rand(1, 3, 256, 256))] == [8, 16, 32]  # CelebA-HQ


def test_naive_categorical_term_is_summed_cross_entropy():
    rec = build_reconstruction({"type": "categorical", "num_classes": 5})
    logits = torch.randn(3, 5, 4, 4)
    labels = torch.randint(0, 5, (3, 4, 4))
    target = F.one_hot(labels, 5).permute(0, 3, 1, 2).float()
    res = rec(logits, target)
    torch.testing.assert_close(res.loss, F.cross_entropy(logits, labels, reduction="sum") / 3)
    assert res.stats["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    assert res.mse == pytest.approx(float(((logits.argmax(1) - labels) / 4.0).pow(2).mean()))


def test_vmf_categorical_term_uses_the_likelihood_and_its_kappa():
    rec = build_reconstruction({"type": "vmf_categorical", "num_classes": 256, "class_vectors": "circle"})
    assert rec.output_channels(256) == 2
    f = torch.randn(2, 2, 3, 3)
    labels = torch.randint(0, 256, (2, 3, 3))
    res = rec(f, F.one_hot(labels, 256).permute(0, 3, 1, 2).float())
    torch.testing.assert_close(res.loss, rec.vmf(f, labels))
    assert "kappa_x" in res.stats and rec.predict(f).shape == (2, 3, 3)
    assert any(p is rec.vmf.log_kappa_inv for p in rec.parameters())  # trained with the model
    with pytest.raises(ValueError, match="needs num_classes"):
        build_reconstruction({"type": "categorical"})
    with pytest.raises(ValueError, match="belong to the vmf_categorical"):
        build_reconstruction({"type": "categorical", "num_classes": 3, "class_vectors": "onehot"})


def test_vqvae2_top_down_path_commitment_and_ema():
    torch.manual_seed(0)
    q = HierarchicalVQ(4, [6, 6], 8, beta=0.25)
    feats = [torch.randn(2, 6, 2, 2, requires_grad=True), torch.randn(2, 6, 4, 4, requires_grad=True)]
    before = q.groups[0].quantizer.codebook(0).clone()
    out = q(feats)
    assert set(out.terms) == {"commitment_l1", "commitment_l2"}
    torch.testing.assert_close(out.loss, out.terms["commitment_l1"] + out.terms["commitment_l2"])
    g1 = out.encoded[0].detach()
    z1 = q.groups[0].quantizer.decode(out.codes_per_resolution[0])
    z_old = before[out.codes_per_resolution[0][:, 0]].movedim(-1, 1)  # codewords before the EMA step
    torch.testing.assert_close(out.terms["commitment_l1"], 0.25 * ((g1 - z_old) ** 2).sum() / 2)
    assert not torch.equal(before, q.groups[0].quantizer.codebook(0))  # EMA update in training
    out.quantized.sum().backward()  # straight-through: the bottom-up features get gradient
    assert feats[0].grad is not None and feats[1].grad.abs().sum() > 0
    q.eval()
    codes = q.encode(feats)
    torch.testing.assert_close(q.decode(codes), q(feats).quantized)
    assert z1.shape == (2, 4, 2, 2)


def test_hierarchical_quantizer_needs_matching_encoder():
    cfg = {
        "encoder": {"type": "hqvae", "in_channels": 3, "channels": 8, "n_pool": 1, "resolutions": 2},
        "decoder": {"type": "hqvae", "out_channels": 3, "channels": 8, "upsample": 1},
        "quantizer": {"type": "hierarchical_sq", "dim": 4, "codebook_size": 8, "feature_channels": [8, 16]},
    }
    with pytest.raises(ValueError, match=r"feature_channels are \[8, 16\]"):
        build_model(cfg)
    cfg["quantizer"]["type"] = "gaussian_sq"
    cfg["quantizer"].pop("feature_channels")
    with pytest.raises(ValueError, match="flat quantizer a single-output encoder"):
        build_model(cfg)


@pytest.mark.parametrize("conf", CONFS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in CONFS])
def test_every_image_recipe_config_trains_one_step(conf):
    cfg = load_config(conf)
    assert cfg["data"]["kind"] == "image"
    corpus = conf.parent.parent.name
    size = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "celeba": 64, "celeba_mask": 64}[corpus]
    m = cfg["model"]
    torch.manual_seed(0)
    model = build_model(m)
    c = m["encoder"]["in_channels"]
    if cfg["data"]["image_input"] == "onehot":
        x = F.one_hot(torch.randint(0, c, (2, size, size)), c).permute(0, 3, 1, 2).float()
    else:
        x = torch.rand(2, c, size, size)
    out = model({"x": x})
    assert math.isfinite(float(out.loss.detach()))
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), conf
    codes = model.encode(x)
    y = model.decode(codes)
    assert y.shape[0] == 2 and y.shape[-1] == size
