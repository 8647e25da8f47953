"""Shapes, alignment and locality of the networks in sqcodec.nets (speech, urbansound, codec)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sqcodec.nets import (
    CodecDecoder,
    CodecEncoder,
    SpeechDecoder,
    SpeechEncoder,
    TimeJitter,
    UrbanSoundDecoder,
    UrbanSoundEncoder,
    decode_chunked,
    encode_chunked,
    time_jitter,
)
from sqcodec.nets.blocks import VQVAEResBlock, downsample_mask
from sqcodec.nets.urbansound import BRANCHES

torch.set_num_threads(1)


# ---------------------------------------------------------------------------- speech
def test_speech_shapes_and_target_alignment():
    enc = SpeechEncoder(d_b=8, log_var_channels=1, channels=16)
    dec = SpeechDecoder(d_b=8, n_speakers=3, speaker_dim=4, hidden=8)
    x = torch.randn(2, 80, 34)
    h = enc(x)
    assert h.shape == (2, 9, 16)
    y = dec(h[:, :8], speaker=torch.tensor([0, 2]))
    assert y.shape == (2, 80, 32)
    assert torch.equal(enc.target(x), x[:, :, 1:-1])


def test_speech_encoder_rejects_odd_target_length():
    enc = SpeechEncoder(d_b=4, channels=8)
    with pytest.raises(ValueError, match="T even"):
        enc(torch.randn(1, 80, 35))


def test_speech_decoder_without_speakers_and_speaker_required():
    dec = SpeechDecoder(d_b=4, n_speakers=0, hidden=8)
    assert not dec.uses_speaker and dec(torch.randn(1, 4, 5)).shape == (1, 80, 10)
    dec = SpeechDecoder(d_b=4, n_speakers=2, speaker_dim=3, hidden=8)
    with pytest.raises(ValueError, match="speaker"):
        dec(torch.randn(1, 4, 5))


def test_speech_decoder_lengths_pack_out_padding():
    torch.manual_seed(0)
    dec = SpeechDecoder(d_b=4, n_speakers=0, hidden=8).eval()
    z = torch.randn(1, 4, 6)
    alone = dec(z[..., :4])
    z_pad = z.clone()
    z_pad[..., 4:] = 100.0
    padded = dec(z_pad, lengths=torch.tensor([8]))
    torch.testing.assert_close(padded[..., :8], alone)


def test_speech_masks():
    enc = SpeechEncoder(d_b=4, channels=8)
    x = torch.randn(2, 80, 12)
    m_in = torch.ones(2, 12, dtype=torch.bool)
    m_in[1, 8:] = False
    tm = enc.target_mask(m_in, x)
    assert torch.equal(tm, m_in[:, 1:-1])
    assert torch.equal(enc.target_mask(tm, x), tm)
    lm = enc.latent_mask(tm, (5,))
    assert lm.tolist() == [[True] * 5, [True, True, True, True, False]]


def test_jitter_only_in_training_and_moves_by_at_most_one():
    jit = TimeJitter(0.5)
    t = 200
    z = torch.arange(t, dtype=torch.float64).expand(64, 1, t).clone()
    jit.eval()
    assert torch.equal(jit(z), z)
    jit.train()
    out = jit(z, generator=torch.Generator().manual_seed(0))
    offset = out[:, 0] - torch.arange(t)
    assert offset.abs().max() <= 1
    assert (offset[:, 0] >= 0).all() and (offset[:, -1] <= 0).all()  # edges stay or move inward
    inner = offset[:, 1:-1]
    frac_back, frac_fwd = (inner == -1).double().mean(), (inner == 1).double().mean()
    assert abs(frac_back - 0.25) < 0.02 and abs(frac_fwd - 0.25) < 0.02


def test_jitter_respects_lengths():
    z = torch.arange(10.0).expand(500, 1, 10).clone()
    out = time_jitter(z, 1.0, lengths=torch.full((500,), 6), generator=torch.Generator().manual_seed(1))
    assert out[:, 0, :6].max() <= 5  # valid frames never take a padded one
    assert (out[:, 0, 5] == 4).any()


def test_speech_decoder_jitter_training_only():
    torch.manual_seed(0)
    dec = SpeechDecoder(d_b=4, n_speakers=0, hidden=8)
    z = torch.randn(2, 4, 16)
    dec.eval()
    assert torch.equal(dec(z), dec(z))
    dec.train()
    torch.manual_seed(1)
    a = dec(z)
    torch.manual_seed(2)
    b = dec(z)
    assert not torch.equal(a, b)
    assert torch.equal(dec(z, jitter=False), dec.eval()(z))


# ---------------------------------------------------------------------------- urbansound
def _reference_resblock(block: VQVAEResBlock, x: torch.Tensor) -> torch.Tensor:
    """The rosinality/Liu et al. block, in-place ReLUs included."""
    conv = nn.Sequential(nn.ReLU(inplace=True), block.conv1, nn.ReLU(inplace=True), block.conv2)
    inp = x.clone()
    out = conv(inp)
    out += inp
    return out


def test_resblock_inplace_quirk():
    torch.manual_seed(0)
    block = VQVAEResBlock(6, 3)
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        ref = _reference_resblock(block, x)
        torch.testing.assert_close(block(x), ref)
        torch.testing.assert_close(
            block(x), torch.relu(x) + block.conv2(torch.relu(block.conv1(torch.relu(x))))
        )
        block.inplace_quirk = False
        torch.testing.assert_close(block(x), x + block.conv2(torch.relu(block.conv1(torch.relu(x)))))
        assert not torch.allclose(block(x), ref)


def test_urbansound_shapes():
    torch.manual_seed(0)
    enc = UrbanSoundEncoder(d_b=64, channels=8, res_channels=4)
    dec = UrbanSoundDecoder(d_b=64, channels=8, res_channels=4)
    x = torch.randn(1, 1, 80, 344)
    with torch.no_grad():
        h = enc(x)
        assert h.shape == (1, 64, 20, 86)
        assert dec(h).shape == (1, 1, 80, 344)
        assert UrbanSoundEncoder(d_b=64, log_var_channels=64, channels=8, res_channels=4)(x).shape == (
            1,
            128,
            20,
            86,
        )
    with pytest.raises(ValueError, match="divisible by 4"):
        enc(torch.randn(1, 1, 80, 343))


@pytest.mark.parametrize("size", [(80, 344), (16, 20), (8, 12)])
def test_urbansound_branches_have_equal_sizes(size):
    enc = UrbanSoundEncoder(d_b=4, channels=4, res_channels=2)
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        shapes = {tuple(b(x).shape) for b in enc.branches}
    assert shapes == {(1, 4, size[0] // 4, size[1] // 4)}
    assert [(b.net[0].kernel_size[0], b.net[0].padding[0]) for b in enc.branches] == list(BRANCHES)


def test_urbansound_latent_mask():
    enc = UrbanSoundEncoder(d_b=4, channels=4, res_channels=2)
    m = torch.ones(2, 16, dtype=torch.bool)
    m[1, 9:] = False
    lm = enc.latent_mask(m, (5, 4))
    assert lm.shape == (2, 5, 4)
    assert lm[1, 0].tolist() == [True, True, True, False]  # frames 8..11 -> any valid


# ---------------------------------------------------------------------------- codec
def _codec(d_b=6, lv=0, channels=16):
    torch.manual_seed(0)
    return (
        CodecEncoder(d_b=d_b, log_var_channels=lv, channels=channels).eval(),
        CodecDecoder(d_b=d_b, channels=channels).eval(),
    )


@pytest.mark.parametrize("t", [1, 2, 7, 8, 33, 64])
def test_codec_shapes(t):
    enc, dec = _codec(lv=1)
    with torch.no_grad():
        h = enc(torch.randn(2, 80, t))
        assert h.shape == (2, 7, math.ceil(t / 2))
        assert dec(h[:, :6]).shape == (2, 80, 2 * math.ceil(t / 2))


def test_codec_has_no_normalisation_across_time():
    enc, dec = _codec()
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.InstanceNorm1d)
    assert not any(isinstance(m, norms) for m in [*enc.modules(), *dec.modules()])


def test_codec_encoder_receptive_field_is_exact():
    enc, _ = _codec()
    r = enc.receptive_field
    t = 2 * r + 40
    j = (t // 2) // 2  # a latent in the middle
    x = torch.randn(1, 80, t)
    with torch.no_grad():
        base = enc(x)[..., j]
        for frame, changes in [
            (2 * j - r, True),
            (2 * j - r - 1, False),
            (2 * j + 1 + r, True),
            (2 * j + 2 + r, False),
        ]:
            x2 = x.clone()
            x2[..., frame] += 1.0
            assert (not torch.allclose(enc(x2)[..., j], base, atol=0, rtol=0)) == changes, frame


@pytest.mark.parametrize("t,chunk", [(97, 5), (100, 16), (150, 7), (40, 100)])
def test_codec_encoder_chunk_invariance(t, chunk):
    enc, _ = _codec()
    x = torch.randn(2, 80, t)
    with torch.no_grad():
        full = enc(x)
        chunked = encode_chunked(enc, x, chunk)
        assert chunked.shape == full.shape
        torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)
        # the same, by hand: one interior chunk with receptive-field overlap, then crop
        r = 2 * math.ceil(enc.receptive_field / 2)
        a = r // 2 + 3
        b = a + 4
        if 2 * b + r <= t:
            piece = enc(x[..., 2 * a - r : 2 * b + r])[..., r // 2 : r // 2 + (b - a)]
            torch.testing.assert_close(piece, full[..., a:b], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n,chunk", [(50, 7), (31, 31), (64, 10)])
def test_codec_decoder_chunk_invariance(n, chunk):
    _, dec = _codec()
    z = torch.randn(2, 6, n)
    with torch.no_grad():
        torch.testing.assert_close(decode_chunked(dec, z, chunk), dec(z), atol=1e-5, rtol=1e-5)


def test_codec_decoder_receptive_field_bounds_dependence():
    _, dec = _codec()
    r = dec.receptive_field
    n = 2 * r + 20
    z = torch.randn(1, 6, n)
    f = n  # output frame in the middle, latent f // 2
    with torch.no_grad():
        base = dec(z)[..., f]
        for lat in (f // 2 - r - 1, f // 2 + r + 1):
            z2 = z.clone()
            z2[..., lat] += 1.0
            assert torch.equal(dec(z2)[..., f], base)


def test_downsample_mask_ceil_semantics():
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    assert downsample_mask(m, 2, 3).tolist() == [[True, True, False], [True, False, False]]
    assert downsample_mask(m, 2, 4).tolist() == [[True, True, False, False], [True, False, False, False]]
