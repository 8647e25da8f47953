"""Vocoders: features of a mel preset -> waveform. HiFi-GAN (SpeechBrain's generator, trained by
:mod:`sqcodec.vocoder.train`) and the Griffin-Lim fallback (:mod:`sqcodec.vocoder.griffinlim`)."""

from .hifigan import GENERATOR_CONFIGS, HifiGanVocoder, VocoderError, load_vocoder, save_vocoder

__all__ = ["GENERATOR_CONFIGS", "HifiGanVocoder", "VocoderError", "load_vocoder", "save_vocoder"]
