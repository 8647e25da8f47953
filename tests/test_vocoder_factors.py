"""HiFi-GAN upsampling factors for any hop (``sqcodec.vocoder.factors``)."""

from __future__ import annotations

import math

import pytest
import torch

from sqcodec.audio import PRESETS
from sqcodec.vocoder import GENERATOR_CONFIGS, HifiGanVocoder
from sqcodec.vocoder.factors import generator_config_for_hop, prime_factors, upsample_factors_for_hop


def test_prime_factors():
    assert prime_factors(1) == []
    assert prime_factors(256) == [2] * 8
    assert prime_factors(300) == [2, 2, 3, 5, 5]
    assert prime_factors(97) == [97]
    with pytest.raises(ValueError):
        prime_factors(0)


@pytest.mark.parametrize(
    ("hop", "stages", "want"),
    [
        (256, 3, [8, 8, 4]),  # HiFi-GAN V3
        (256, 4, [4, 4, 4, 4]),
        (300, 4, [5, 5, 4, 3]),  # ParallelWaveGAN's vctk HiFi-GAN
        (300, 3, [10, 6, 5]),
        (160, 3, [8, 5, 4]),
        (160, 4, [5, 4, 4, 2]),
        (200, 3, [8, 5, 5]),
        (441, 2, [21, 21]),
        (7, 3, [7, 1, 1]),
        (1, 2, [1, 1]),
    ],
)
def test_upsample_factors_for_hop(hop, stages, want):
    got = upsample_factors_for_hop(hop, stages)
    assert got == want
    assert math.prod(got) == hop and len(got) == stages and got == sorted(got, reverse=True)


def test_upsample_factors_product_any_hop():
    for hop in range(1, 1025):
        for stages in (1, 3, 4):
            f = upsample_factors_for_hop(hop, stages)
            assert math.prod(f) == hop and len(f) == stages and all(x >= 1 for x in f), (hop, stages)


def test_upsample_factors_bad_stages():
    with pytest.raises(ValueError, match="stage"):
        upsample_factors_for_hop(256, 0)


@pytest.mark.parametrize("size", sorted(GENERATOR_CONFIGS))
def test_generator_config_for_hop_256_unchanged(size):
    cfg = generator_config_for_hop(size, 256)
    assert cfg == GENERATOR_CONFIGS[size]
    cfg["upsample_factors"].append(1)  # a deep copy: the table is not modified
    assert GENERATOR_CONFIGS[size]["upsample_factors"][-1] != 1


@pytest.mark.parametrize("size", sorted(GENERATOR_CONFIGS))
@pytest.mark.parametrize("hop", [300, 160, 200])
def test_generator_config_for_hop_refactors(size, hop):
    base = GENERATOR_CONFIGS[size]
    cfg = generator_config_for_hop(size, hop)
    n = len(base["upsample_factors"])
    assert cfg["upsample_factors"] == upsample_factors_for_hop(hop, n)
    assert cfg["upsample_kernel_sizes"] == [2 * u + u % 2 for u in cfg["upsample_factors"]]
    assert {k: v for k, v in cfg.items() if not k.startswith("upsample_")} == {
        k: v for k, v in base.items() if not k.startswith("upsample_")
    }
    assert cfg["upsample_initial_channel"] == base["upsample_initial_channel"]
    assert GENERATOR_CONFIGS[size]["upsample_factors"] == base["upsample_factors"]


def test_generator_config_for_hop_unknown_size():
    with pytest.raises(ValueError, match="unknown HiFi-GAN size"):
        generator_config_for_hop("v9", 300)


@pytest.mark.parametrize("preset", ["vctk", "zerospeech"])
def test_vocoder_builds_for_other_hops(preset):
    """The refactored config builds a generator whose output covers T * hop samples of the preset
    exactly (odd factors get kernel 2u + 1); chunked inference is exact too."""
    hop = PRESETS[preset].hop_length
    torch.manual_seed(0)
    voc = HifiGanVocoder(preset, generator_config_for_hop("v3", hop))
    with torch.no_grad():
        y = voc(torch.randn(1, 80, 12) - 4)
    assert y.shape[-1] == 12 * hop
    voc.chunk_frames, voc.context_frames = 8, 4
    assert voc.vocode(torch.randn(80, 30) - 4).shape == (30 * hop,)
