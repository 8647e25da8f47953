"""The codec API (sqcodec.codec): chunk-exact features and codes, file round trips, model loading/hash."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import TINY_CODEC

import sqcodec.codec as codec_mod
from sqcodec.audio import load_mono, mel_features, resample
from sqcodec.bitstream import CodesFormatError, read_codes, read_header
from sqcodec.codec import Codec, CodecError, load_codec, model_hash, read_mono_blocks, save_codec
from sqcodec.model import build_model
from sqcodec.train.checkpoint import save_checkpoint

TINY = TINY_CODEC
LIBRI = "speech/librispeech/test-other/2033/2033-164914-0000.flac"
STEREO_44K = "env/urbansound8k/air_conditioner/100852-0-0-0.flac"


def tiny_codec(seed: int = 0, model_id: str = "tiny") -> Codec:
    """A random-init tiny codec whose codebooks are scaled to the encoder's output, so that codes vary
    (a raw random init maps almost every latent to one or two codewords, which would make the
    chunk-invariance tests vacuous)."""
    torch.manual_seed(seed)
    model = build_model(TINY)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 80, 200, generator=g) * 2 - 6  # roughly log-mel scale
    with torch.no_grad():
        z = model.encoder.eval()(x)
        std = float(z.std())
        for i, cb in enumerate(model.quantizer.codebooks):
            cb.mul_(std * 0.5**i)
    return Codec(model, "codec16k", model_id=model_id, griffinlim_iters=4)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return tiny_codec()


@pytest.fixture(scope="module")
def speech(realaudio):
    wave, sr = sf.read(realaudio / LIBRI, dtype="float32")
    return wave, sr


def test_chunk_features_equal_whole_file(codec, speech):
    wave, sr = speech
    assert sr == 16000
    w = wave.astype(np.float64)
    whole = mel_features(torch.from_numpy(w), "codec16k")
    t = whole.shape[-1]
    for start, stop in [(0, 1), (0, 7), (1, 9), (5, 40), (100, 101), (t - 3, t), (t - 1, t), (0, t), (37, t)]:
        part = codec.features(w, start, stop)
        assert part.shape == (80, stop - start)
        assert torch.allclose(part, whole[:, start:stop], rtol=0, atol=1e-9), (start, stop)
    # the margin matters: features of a segment cut at frame 100's centre differ near its edge
    naive = mel_features(torch.from_numpy(w[100 * 256 : 140 * 256]), "codec16k")
    assert not torch.allclose(naive[:, :2], whole[:, 100:102], atol=1e-3)


def test_codes_do_not_depend_on_chunk_size(codec, speech):
    wave, sr = speech
    ref = codec.model.encode(mel_features(torch.from_numpy(wave), "codec16k")[None])
    for seconds in (0.1, 0.37, 2.0, 1000.0):
        codes = codec.encode(wave, sr, chunk_seconds=seconds)
        assert torch.equal(codes, ref), seconds
    assert codes.shape == (1, 3, -(-(len(wave) // 256 + 1) // 2))
    assert all(len(torch.unique(codes[0, i])) >= 4 for i in range(3)), "codes too uniform to test anything"


def test_codes_chunk_invariant_three_minutes(codec, monkeypatch):
    sr = 22050
    rng = np.random.default_rng(0)
    t = np.arange(180 * sr) / sr
    wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * np.sin(0.5 * t)) * t) * (1 + np.sin(3 * t)) / 2
    wave = (wave + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    a = codec.encode(wave, sr, chunk_seconds=60.0)
    w16 = resample(wave, sr, 16000)
    assert a.shape[-1] == -(-(len(w16) // 256 + 1) // 2)
    # streamed in small blocks with 7.3 s chunks: same codes, and the buffer stays near one chunk
    seen = []
    original = codec._segment_features

    def spy(buf, *args):
        seen.append(len(buf))
        return original(buf, *args)

    monkeypatch.setattr(codec, "_segment_features", spy)
    blocks = (w16[i : i + 4000] for i in range(0, len(w16), 4000))
    b, n = codec.encode_blocks(blocks, chunk_latents=round(7.3 * 31.25))
    assert n == len(w16) and len(seen) == -(-a.shape[-1] // 228)
    assert torch.equal(b, a[0])
    assert max(seen) < 9 * 16000  # a 7.3 s chunk + context + one block, never the 180 s file


@pytest.mark.parametrize("block", [1000, 65536])
def test_streamed_file_encode_equals_array_encode(codec, realaudio, tmp_path, monkeypatch, block):
    src = realaudio / STEREO_44K  # 44.1 kHz stereo: downmixed and resampled while streaming
    wave, info = load_mono(src, 16000)
    streamed = np.concatenate(list(read_mono_blocks(src, 16000, block)))
    assert streamed.dtype == np.float32 and np.array_equal(streamed, wave)
    monkeypatch.setattr(codec_mod, "STREAM_BLOCK", block)
    cf = codec.encode_file(src, tmp_path / "x.codes", chunk_seconds=0.7)
    assert np.array_equal(cf.codes, codec.encode_wave(wave).numpy())
    # the header keeps the model-rate length only where decode cannot derive it from orig_length
    derived = round(info.num_samples * 16000 / info.sample_rate)
    assert cf.meta == ({} if derived == len(wave) else {"num_samples": len(wave)})
    assert (cf.orig_channels, cf.orig_sample_rate, cf.orig_length) == (2, 44100, info.num_samples)


def test_encode_keeps_the_model_rate_length_when_it_cannot_be_derived(codec, speech, tmp_path, monkeypatch):
    wave, sr = speech
    path = tmp_path / "in.wav"
    sf.write(path, wave[: sr * 2], sr)
    assert codec.encode_file(path, tmp_path / "a.codes").meta == {}
    monkeypatch.setattr(codec_mod, "_model_rate_length", lambda n, a, b: n + 1)
    cf = codec.encode_file(path, tmp_path / "b.codes")
    assert cf.meta == {"num_samples": sr * 2}
    assert read_header(tmp_path / "b.codes")["meta"] == {"num_samples": sr * 2}
    assert codec.decode_file(tmp_path / "b.codes", tmp_path / "b.wav").shape == (1, sr * 2)


def test_encode_batch_and_layers(codec, speech):
    wave, sr = speech
    w = wave[: sr * 2]
    one = codec.encode(w, sr)
    batch = codec.encode(np.stack([w, w * 0.5]), sr)
    assert batch.shape[0] == 2 and torch.equal(batch[0], one[0])
    two = codec.encode(w, sr, layers=2)
    assert torch.equal(two[0], one[0, :2])  # greedy residual codes: a prefix of the full codes
    stereo = codec.encode(np.stack([w, w])[None], sr)  # (B, C, samples) is downmixed
    assert torch.equal(stereo, one)
    with pytest.raises(CodecError, match="layers"):
        codec.encode(w, sr, layers=4)
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(np.full(4000, np.nan, np.float32), sr)
    feats = codec.decode(one, layers=1)
    assert feats.shape == (1, 80, 2 * one.shape[-1])
    audio = codec.decode_audio(one[0], length=len(w))
    assert audio.shape == (1, len(w)) and np.isfinite(audio).all()


def test_bits_per_second(codec):
    assert codec.latent_rate == pytest.approx(31.25)
    assert codec.bits_per_second(1) == pytest.approx(31.25 * 4)
    assert codec.bits_per_second() == pytest.approx(31.25 * 12)


def _stereo_48k(realaudio, tmp_path):
    wave, sr = sf.read(realaudio / LIBRI, dtype="float32")
    w = resample(wave[: sr * 3], sr, 48000)
    path = tmp_path / "stereo48k.wav"
    sf.write(path, np.stack([w, 0.5 * w], axis=1), 48000, subtype="PCM_24")
    return path


@pytest.mark.parametrize("kind", ["libri16k_mono", "made48k_stereo", "urban44k_stereo", "vctk48k_mono"])
def test_file_round_trip_restores_rate_channels_length(codec, realaudio, tmp_path, kind):
    if kind == "libri16k_mono":
        src = realaudio / LIBRI
    elif kind == "made48k_stereo":
        src = _stereo_48k(realaudio, tmp_path)
    elif kind == "urban44k_stereo":
        src = realaudio / STEREO_44K
    else:
        src = realaudio / "speech/vctk48k/p228/p228_023.flac"
    info = sf.info(str(src))
    codes = tmp_path / "x.codes"
    cf = codec.encode_file(src, codes, chunk_seconds=1.0)
    h = read_header(codes)
    assert (h["orig_sample_rate"], h["orig_channels"], h["orig_length"]) == (
        info.samplerate,
        info.channels,
        info.frames,
    )
    assert h["model_sha256"] == codec.model_sha256 and h["preset"] == "codec16k"
    assert np.array_equal(read_codes(codes).codes, cf.codes)
    out = tmp_path / "y.wav"
    audio = codec.decode_file(codes, out)
    got = sf.info(str(out))
    assert (got.samplerate, got.channels, got.frames) == (info.samplerate, info.channels, info.frames)
    assert audio.shape == (info.channels, info.frames) and np.isfinite(audio).all()
    assert np.abs(audio).max() > 0
    if info.channels > 1:
        assert np.array_equal(audio[0], audio[1])  # mono duplicated to every channel


def test_decode_with_fewer_layers(codec, realaudio, tmp_path):
    codes = tmp_path / "x.codes"
    codec.encode_file(realaudio / LIBRI, codes)
    full = read_codes(codes)
    one = read_codes(codes, layers=1)
    assert np.array_equal(one.codes, full.codes[:1])
    f1 = codec.decode(torch.from_numpy(one.codes))
    f3 = codec.decode(torch.from_numpy(full.codes))
    assert not torch.allclose(f1, f3)  # the extra layers change the decoded features
    assert torch.allclose(f1, codec.decode(torch.from_numpy(full.codes), layers=1))
    out = codec.decode_file(codes, tmp_path / "y1.flac", layers=1)
    assert out.shape == (1, sf.info(str(realaudio / LIBRI)).frames)


def test_bit_flip_is_detected(codec, realaudio, tmp_path):
    codes = tmp_path / "x.codes"
    codec.encode_file(realaudio / LIBRI, codes)
    data = bytearray(codes.read_bytes())
    data[-10] ^= 0x04
    codes.write_bytes(bytes(data))
    with pytest.raises(CodesFormatError, match="CRC"):
        codec.decode_file(codes, tmp_path / "y.wav")
    assert not (tmp_path / "y.wav").exists()


def test_codes_from_another_model_are_refused(codec, realaudio, tmp_path):
    other = tiny_codec(seed=1, model_id="other")
    assert other.model_sha256 != codec.model_sha256
    codes = tmp_path / "x.codes"
    other.encode_file(realaudio / LIBRI, codes)
    with pytest.raises(CodesFormatError, match="other"):
        codec.decode_file(codes, tmp_path / "y.wav")
    assert not (tmp_path / "y.wav").exists()


def test_save_load_folder_and_checkpoint_share_the_hash(codec, speech, tmp_path):
    folder = save_codec(codec, tmp_path / "export")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_sha256"] == codec.model_sha256 and cfg["model"] == TINY
    loaded = load_codec(folder)
    assert loaded.model_sha256 == codec.model_sha256 and loaded.model_id == "tiny"
    wave, sr = speech
    assert torch.equal(loaded.encode(wave[:16000], sr), codec.encode(wave[:16000], sr))
    # a training checkpoint (weights-only) of the same model has the same content hash
    ckpt = tmp_path / "exp" / "checkpoints" / "step_00000007.pt"
    save_checkpoint(
        {
            "step": 7,
            "model": codec.model.state_dict(),
            "config": {"model": TINY, "data": {"preset": "codec16k"}},
        },
        ckpt,
    )
    from_ckpt = load_codec(ckpt)
    assert from_ckpt.model_sha256 == codec.model_sha256
    assert from_ckpt.model_id == "exp/step_00000007"
    # changing one weight changes the hash; weights that no longer match config.json are refused
    sd = dict(codec.model.state_dict())
    name = sorted(sd)[0]
    sd[name] = sd[name].clone()
    sd[name].view(-1)[0] += 1e-3
    m2 = build_model(TINY)
    m2.load_state_dict(sd)
    assert model_hash(m2, TINY, codec.preset) != codec.model_sha256
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    with pytest.raises(CodecError, match="do not match config.json"):
        load_codec(folder)


def test_load_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(codec_mod, "DEFAULT_MODEL_DIR", tmp_path / "no_default")
    with pytest.raises(CodecError, match="--model"):
        load_codec(None)
    with pytest.raises(CodecError, match="no such model"):
        load_codec(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CodecError, match="bad.pt"):
        load_codec(bad)
    (tmp_path / "folder").mkdir()
    with pytest.raises(CodecError, match="not a codec folder"):
        load_codec(tmp_path / "folder")
    torch.manual_seed(0)
    speech_model = build_model(
        {"encoder": {"type": "speech"}, "quantizer": {"type": "gaussian_sq", "dim": 8, "codebook_size": 4}}
    )
    with pytest.raises(CodecError, match="codec nets"):
        Codec(speech_model, "codec16k")


def test_decode_applies_gain_and_checks_lengths(codec, realaudio, tmp_path):
    import dataclasses

    from sqcodec.bitstream import write_codes

    codes = tmp_path / "x.codes"
    cf = codec.encode_file(realaudio / STEREO_44K, codes)
    base = codec.decode_file(codes, tmp_path / "a.wav")
    write_codes(tmp_path / "g.codes", dataclasses.replace(cf, gain=0.5))
    half = codec.decode_file(tmp_path / "g.codes", tmp_path / "g.wav")
    assert np.allclose(half, 0.5 * base, atol=1e-6)
    # a (CRC-valid) header whose lengths disagree with the codes is refused before decoding
    bad = dataclasses.replace(cf, orig_length=cf.orig_length * 1000, meta={**cf.meta, "num_samples": 10**9})
    write_codes(tmp_path / "bad.codes", bad)
    with pytest.raises(CodesFormatError, match="inconsistent"):
        codec.decode_file(tmp_path / "bad.codes", tmp_path / "bad.wav")
    assert not (tmp_path / "bad.wav").exists()


def test_decode_refuses_a_header_asking_for_gigabytes(codec, realaudio, tmp_path):
    """A consistent but hostile header (10 MHz, 1,024 channels) is refused before anything is allocated."""
    import dataclasses

    from sqcodec.bitstream import write_codes

    cf = codec.encode_file(realaudio / STEREO_44K, tmp_path / "x.codes")
    rate = 10_000_000
    length = round(cf.orig_length / cf.orig_sample_rate * rate)
    bomb = dataclasses.replace(cf, orig_sample_rate=rate, orig_channels=1024, orig_length=length)
    write_codes(tmp_path / "bomb.codes", bomb)
    with pytest.raises(CodesFormatError, match="GiB"):
        codec.decode_file(tmp_path / "bomb.codes", tmp_path / "bomb.wav")
    assert not (tmp_path / "bomb.wav").exists()
