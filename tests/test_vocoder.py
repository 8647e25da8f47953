"""HiFi-GAN vocoder: shapes, chunked inference, safe save/load, codec integration, the trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_codec import tiny_codec

from sqcodec.codec import CodecError, load_codec, save_codec
from sqcodec.vocoder import GENERATOR_CONFIGS, HifiGanVocoder, VocoderError, load_vocoder, save_vocoder
from sqcodec.vocoder.train import CodecFeatures, SegmentSampler, init_from_exported, stft_loss
from sqcodec.vocoder.train import main as train_main

SPEECH = [
    "speech/librispeech/test-other/2033/2033-164914-0000.flac",
    "speech/cmu_arctic/aew/cmu_arctic_us_aew_a0001.flac",
]


@pytest.fixture(scope="module")
def vocoder() -> HifiGanVocoder:
    torch.manual_seed(0)
    return HifiGanVocoder("codec16k", "v3")


def test_output_length_is_frames_times_hop(vocoder):
    mel = torch.randn(2, 80, 21) - 4
    with torch.no_grad():
        y = vocoder(mel)
    assert y.shape == (2, 21 * 256)
    assert torch.all(y.abs() <= 1)  # tanh output


@pytest.mark.parametrize("size", sorted(GENERATOR_CONFIGS))
def test_every_size_matches_hop_256(size):
    assert int(np.prod(GENERATOR_CONFIGS[size]["upsample_factors"])) == 256


def test_hop_mismatch_is_refused_and_sizes_refactor_for_other_hops():
    with pytest.raises(ValueError, match="hop"):
        HifiGanVocoder("vctk", dict(GENERATOR_CONFIGS["v3"]))  # hop 300, factors 8·8·4
    assert HifiGanVocoder("vctk", "v3").generator_config["upsample_factors"] == [10, 6, 5]


def test_chunked_synthesis_matches_whole_input():
    torch.manual_seed(1)
    v = HifiGanVocoder("codec16k", "v3", chunk_frames=40, context_frames=32).prepare_inference()
    mel = torch.randn(1, 80, 150) - 4
    chunked = v.synthesize(mel)
    whole = v.generator(mel).squeeze(1)
    assert chunked.shape == whole.shape == (1, 150 * 256)
    assert torch.max((chunked - whole).abs()).item() < 1e-4
    # and the seams matter when there is no context: a test of the test
    v.context_frames = 0
    assert torch.max((v.synthesize(mel) - whole).abs()).item() > 1e-3


@pytest.mark.parametrize("folded", [False, True])
def test_save_load_round_trip(tmp_path, folded):
    torch.manual_seed(2)
    v = HifiGanVocoder("codec16k", "v3")
    mel = torch.randn(1, 80, 30) - 4
    if folded:
        v.prepare_inference()
    save_vocoder(v, tmp_path / "voc", record={"steps": 7})
    cfg = json.loads((tmp_path / "voc" / "vocoder.json").read_text())
    assert cfg["weight_norm"] is (not folded) and cfg["record"] == {"steps": 7}
    w = load_vocoder(tmp_path / "voc")
    assert w.record == {"steps": 7}
    ref = v.prepare_inference().synthesize(mel)
    assert torch.allclose(w.synthesize(mel), ref, atol=1e-5)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(VocoderError, match="not a vocoder folder"):
        load_vocoder(tmp_path)
    save_vocoder(HifiGanVocoder("codec16k", "v3"), tmp_path / "v")
    (tmp_path / "v" / "vocoder.safetensors").write_bytes(b"garbage")
    with pytest.raises(VocoderError, match="vocoder.safetensors"):
        load_vocoder(tmp_path / "v")
    (tmp_path / "v" / "vocoder.json").write_text("{not json")
    with pytest.raises(VocoderError, match="vocoder.json"):
        load_vocoder(tmp_path / "v")


def test_codec_folder_carries_its_vocoder(tmp_path):
    torch.manual_seed(3)
    codec = tiny_codec()
    codec.vocoder = HifiGanVocoder("codec16k", "v3").prepare_inference()
    save_codec(codec, tmp_path / "m")
    assert (tmp_path / "m" / "vocoder.json").is_file()
    auto = load_codec(tmp_path / "m")
    assert isinstance(auto.vocoder, HifiGanVocoder)
    assert load_codec(tmp_path / "m", vocoder="griffinlim").vocoder is None
    feats = torch.randn(80, 24) - 4
    w = auto.vocode(feats, length=24 * 256 - 10)
    assert w.shape == (24 * 256 - 10,)
    assert np.allclose(w, codec.vocoder.vocode(feats).numpy()[: 24 * 256 - 10], atol=1e-5)
    # an explicit vocoder folder for a model that has none
    bare = tiny_codec()
    save_codec(bare, tmp_path / "bare")
    assert load_codec(tmp_path / "bare").vocoder is None
    assert isinstance(load_codec(tmp_path / "bare", vocoder=tmp_path / "m").vocoder, HifiGanVocoder)


def test_vocoder_of_another_preset_is_refused(tmp_path):
    codec = tiny_codec()
    save_codec(codec, tmp_path / "m")
    preset = {**codec.preset.to_dict(), "name": "codec16k-other", "fmax": 7600.0}
    save_vocoder(HifiGanVocoder(preset, "v3"), tmp_path / "voc")
    with pytest.raises(CodecError, match="preset"):
        load_codec(tmp_path / "m", vocoder=tmp_path / "voc")


def test_stft_loss_is_zero_for_identical_and_grows_with_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 8192, generator=g) * 0.1
    assert stft_loss(y, y).item() < 1e-6
    small = stft_loss(y + 0.01 * torch.randn(2, 8192, generator=g), y).item()
    big = stft_loss(y + 0.1 * torch.randn(2, 8192, generator=g), y).item()
    assert 0 < small < big


def test_trainer_learns_resumes_and_exports(realaudio, tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("".join(f"{realaudio / p}\n" for p in SPEECH))
    out = tmp_path / "exp"
    common = [
        "--train",
        str(lst),
        "--out",
        str(out),
        "--size",
        "v3",
        "--batch",
        "2",
        "--segment",
        "4096",
        "--log-every",
        "1",
        "--ckpt-every",
        "4",
        "--lr",
        "1e-3",
        "--device",
        "cpu",
    ]
    assert train_main([*common, "--steps", "12", "--gan-start", "100"]) == 0
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    mel = [r["mel"] for r in rows if "mel" in r]
    assert len(mel) == 12 and np.mean(mel[-3:]) < np.mean(mel[:3])  # it learns
    # resume into the GAN phase: one discriminator + generator step
    assert train_main([*common, "--steps", "13", "--gan-start", "12", "--resume"]) == 0
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 13 and {"d", "adv", "fm"} <= rows[-1].keys()
    assert train_main(["--out", str(out), "--export", str(tmp_path / "voc")]) == 0
    v = load_vocoder(tmp_path / "voc")
    assert v.record["steps"] == 13 and v.record["size"] == "v3"
    assert v.vocode(torch.randn(80, 10) - 4).shape == (2560,)


def test_init_generator_continues_an_exported_vocoder(realaudio, tmp_path):
    """``--init-generator``: a training-form generator started from an exported (weight-norm-folded)
    vocoder computes what the export does; a run from it exports a record that adds its steps to the
    export's and keeps what it started from; a generator of another size is refused."""
    torch.manual_seed(3)
    source = HifiGanVocoder("codec16k", "v3")
    with torch.no_grad():  # give the weight norms' g and v different values than a fresh init has
        for p in source.parameters():
            p.mul_(1.0 + 0.5 * torch.rand_like(p))
    source.record = {"steps": 7, "gan_steps": 0, "size": "v3"}
    save_vocoder(source.prepare_inference(), tmp_path / "start")
    torch.manual_seed(4)
    fresh = HifiGanVocoder("codec16k", "v3")
    mel = torch.randn(1, 80, 12) - 4
    with torch.no_grad():
        before = fresh(mel)
        assert init_from_exported(fresh, tmp_path / "start")["steps"] == 7
        assert (fresh(mel) - source.generator(mel).squeeze(1)).abs().max() < 1e-5
        assert (fresh(mel) - before).abs().max() > 1e-2  # it did change the generator
    assert any(".parametrizations.weight." in k for k in fresh.generator.state_dict())  # still trainable
    with pytest.raises(SystemExit, match="generator or preset differs"):
        init_from_exported(HifiGanVocoder("codec16k", "v2"), tmp_path / "start")
    lst = tmp_path / "train.txt"
    lst.write_text(f"{realaudio / SPEECH[0]}\n")
    out = tmp_path / "exp"
    args = ["--train", str(lst), "--out", str(out), "--batch", "1", "--segment", "2048", "--steps", "2"]
    args += ["--gan-start", "100", "--device", "cpu", "--init-generator", str(tmp_path / "start")]
    assert train_main(args) == 0
    assert train_main(["--out", str(out), "--export", str(tmp_path / "voc")]) == 0
    record = load_vocoder(tmp_path / "voc").record
    assert record["steps"] == 9 and record["initialised_from"]["steps"] == 7
    assert record["lr_decay_per_1000_steps"] == 0.999


def test_codec_features_line_up_with_the_crops(realaudio, tmp_path):
    """``--codec``: crops start on a frame; the ground-truth choice (0) equals the crop's own features
    away from its edges, and the codec's decoded features line up with them (best match at lag 0); a
    run on them exports a record naming the codec and its layer counts."""
    from sqcodec.audio import load_mono
    from sqcodec.audio.features import MelFrontEnd, get_preset
    from sqcodec.codec import DEFAULT_MODEL_DIR

    preset = get_preset("codec16k")
    hop, segment = preset.hop_length, 8192
    frames = segment // hop + 1
    waves = [load_mono(realaudio / p, 16000)[0].astype(np.float32) for p in SPEECH]
    feats = CodecFeatures(str(DEFAULT_MODEL_DIR), waves, preset, [0, 8])
    sampler = SegmentSampler(waves, segment, seed=0, align=hop)
    picks = sampler.picks(6)
    assert all(a % hop == 0 and a + segment <= len(waves[k]) for k, a in picks)
    crops = sampler.crops(picks)
    truth = MelFrontEnd(preset)(crops)
    gt = torch.stack([feats.features[k][0][:, a // hop : a // hop + frames] for k, a in picks])
    codec = torch.stack([feats.features[k][1][:, a // hop : a // hop + frames] for k, a in picks])
    assert gt.shape == truth.shape == codec.shape == (6, 80, frames)
    assert (gt[..., 3:-3] - truth[..., 3:-3]).abs().max() < 1e-3

    def err(lag: int) -> float:
        return float((codec[..., 8 + lag : -8 + lag] - truth[..., 8:-8]).pow(2).mean())

    assert err(0) < 0.5 * min(err(-2), err(2))
    drawn = feats.batch(picks, frames, hop, np.random.default_rng(0))
    assert drawn.shape == (6, 80, frames)
    assert all(torch.equal(drawn[i], gt[i]) or torch.equal(drawn[i], codec[i]) for i in range(6))
    with pytest.raises(SystemExit, match="codec-layers"):
        CodecFeatures(str(DEFAULT_MODEL_DIR), waves, preset, [9])

    lst = tmp_path / "train.txt"
    lst.write_text(f"{realaudio / SPEECH[0]}\n")
    out = tmp_path / "exp"
    args = ["--train", str(lst), "--out", str(out), "--batch", "2", "--segment", "4096", "--steps", "2"]
    args += [
        "--gan-start",
        "100",
        "--device",
        "cpu",
        "--codec",
        str(DEFAULT_MODEL_DIR),
        "--codec-layers",
        "1,8",
    ]
    assert train_main(args) == 0
    assert train_main(["--out", str(out), "--export", str(tmp_path / "voc")]) == 0
    inputs = load_vocoder(tmp_path / "voc").record["inputs"]
    assert inputs["layers"] == [1, 8] and inputs["codec"]["model_id"].startswith("sqcodec-default")


def test_griffin_lim_chunks_long_inputs_without_seams(realaudio):
    from sqcodec.audio import load_mono, mel_features
    from sqcodec.eval.metrics import log_mel_rmse
    from sqcodec.vocoder.griffinlim import griffin_lim

    wave, _ = load_mono(realaudio / SPEECH[0], 16000)
    feats = mel_features(wave, "codec16k").numpy()
    whole = griffin_lim(feats, n_iter=16, length=len(wave))
    chunked = griffin_lim(feats, n_iter=16, length=len(wave), chunk_frames=100, overlap_frames=8)
    assert chunked.shape == whole.shape == wave.shape and np.isfinite(chunked).all()
    # the chunked resynthesis is as faithful to the features as the one-shot one
    err_whole = log_mel_rmse(feats, mel_features(whole, "codec16k").numpy())
    err_chunked = log_mel_rmse(feats, mel_features(chunked, "codec16k").numpy())
    assert err_chunked < 1.1 * err_whole + 0.02, (err_chunked, err_whole)
