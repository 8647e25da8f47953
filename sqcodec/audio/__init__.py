"""Audio front-ends: checked file I/O (:mod:`.io`), mel presets (:mod:`.features`), stats (:mod:`.stats`)."""

from .features import (
    DEFAULT_PRESET,
    PRESETS,
    MelFrontEnd,
    MelPreset,
    get_preset,
    mel_features,
    mel_filterbank,
    to_db,
    to_linear,
    wave_to_features,
)
from .io import AudioError, AudioInfo, atomic_write, audio_info, load_mono, read_audio, resample, write_audio
from .stats import FeatureStats, compute_stats, destandardise, load_stats, standardise

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "AudioError",
    "AudioInfo",
    "FeatureStats",
    "MelFrontEnd",
    "MelPreset",
    "atomic_write",
    "audio_info",
    "compute_stats",
    "destandardise",
    "get_preset",
    "load_mono",
    "load_stats",
    "mel_features",
    "mel_filterbank",
    "read_audio",
    "resample",
    "standardise",
    "to_db",
    "to_linear",
    "wave_to_features",
    "write_audio",
]
