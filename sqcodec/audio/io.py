"""Audio file I/O: validated reading (soundfile), mono downmix, soxr resampling, atomic writing.

Arrays are channel-first, ``(channels, samples)`` float32 in [-1, 1] for integer formats. Every problem
with an input file (missing, unreadable, corrupt or truncated, unsupported format, no samples, NaN/inf
samples) raises :class:`AudioError`, a ``ValueError`` whose message is one line naming the file and the
problem (DESIGN §6). Wrong channel count and wrong rate are not errors: :func:`load_mono` downmixes and
resamples and says so in :attr:`AudioInfo.notes`. Writes go to a temporary file in the target folder and
are renamed into place, so a failed write leaves no partial file and never clobbers an existing one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from ..fsutil import create_temp as _create_temp

__all__ = [
    "AudioError",
    "AudioInfo",
    "atomic_write",
    "audio_info",
    "load_mono",
    "read_audio",
    "resample",
    "write_audio",
]

# soxr quality used everywhere: "HQ" is what librosa.load uses by default (res_type="soxr_hq").
RESAMPLE_QUALITY = "HQ"

_EXT_FORMATS = {"aif": "AIFF", "aiff": "AIFF", "oga": "OGG", "opus": "OGG"}

#: Sample rates accepted on input (below: no audio format; above: beyond any converter, 768 kHz DXD x 4)
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 3_072_000


class AudioError(ValueError):
    """Bad audio input or output: the message is one line naming the file and the problem."""

    def __init__(self, path: Any, problem: str | None = None) -> None:
        self.path = str(path) if problem is not None else ""
        self.problem = " ".join(str(path if problem is None else problem).split())  # always one line
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)


@dataclass(frozen=True)
class AudioInfo:
    """What a file held before any conversion, plus notes on what :func:`load_mono` did to it."""

    path: str
    sample_rate: int
    channels: int
    num_samples: int
    format: str = ""
    subtype: str = ""
    notes: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate


def _open_error(path: Path, exc: Exception) -> AudioError:
    msg = str(exc)
    # libsndfile repeats the file name ("Error opening 'x.wav': ..."): keep only the reason.
    if msg.startswith("Error opening") and ": " in msg:
        msg = msg.split(": ", 1)[1]
    return AudioError(path, f"cannot read audio (unsupported, corrupt or not an audio file: {msg})")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "no such file")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _check_wav_truncation(path: Path) -> None:
    """libsndfile silently reads a truncated RIFF/WAVE file; compare its data chunk size with the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64, W64 or something libsndfile already vetted
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, csize = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                if csize in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                    return
                have = size - pos - 8
                if have < csize:
                    raise AudioError(
                        path, f"truncated WAV file: header declares {csize} data bytes, file holds {have}"
                    )
                return
            pos += 8 + csize + (csize & 1)


def _check_rate(path: Path, sr: int) -> None:
    """Refuse a sample rate no audio file has: a 48 KB WAV whose header says 1 Hz would otherwise be
    resampled to hours of audio (16 000 x its length, gigabytes of memory) before anything else fails."""
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(
            path, f"implausible sample rate {sr} Hz (audio files are {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)"
        )


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header information without decoding the samples (raises :class:`AudioError` like ``read_audio``)."""
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise _open_error(path, exc) from None
    _check_rate(path, int(info.samplerate))
    return AudioInfo(
        str(path), int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype
    )


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a file as float32 ``(channels, samples)`` and its sample rate, validating everything.

    Raises :class:`AudioError` for a missing or empty file, an unreadable, corrupt, truncated or unsupported
    file, a file with no samples, and NaN/inf samples (possible in float formats).
    """
    path = Path(path)
    _check_exists(path)
    try:
        with sf.SoundFile(str(path)) as f:
            declared = f.frames
            fmt = f.format
            sr = int(f.samplerate)
            _check_rate(path, sr)  # before reading: a lying header must not cost a resampling bomb
            data = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise _open_error(path, exc) from None
    if fmt == "WAV":
        _check_wav_truncation(path)
    if data.shape[0] < declared:
        raise AudioError(
            path, f"truncated file: header declares {declared} samples, only {data.shape[0]} decoded"
        )
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples (zero length)")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        raise AudioError(path, f"{bad} NaN/inf sample values")
    return np.ascontiguousarray(data.T), sr


def resample(wave: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """soxr high-quality resampling of ``(samples,)`` or ``(channels, samples)``; float32 out."""
    wave = np.asarray(wave)
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    x = wave.astype(np.float64, copy=False)
    if x.ndim == 1:
        y = soxr.resample(x, orig_sr, target_sr, quality=RESAMPLE_QUALITY)
    else:
        y = soxr.resample(np.ascontiguousarray(x.T), orig_sr, target_sr, quality=RESAMPLE_QUALITY).T
    return np.ascontiguousarray(y, dtype=np.float32)


def load_mono(path: str | os.PathLike, target_sr: int | None = None) -> tuple[np.ndarray, AudioInfo]:
    """Read, downmix (mean of the channels) and resample (soxr HQ) to ``target_sr``.

    Returns float32 ``(samples,)`` and the :class:`AudioInfo` of the original file, whose ``notes`` say
    whether it was downmixed or resampled. ``target_sr=None`` keeps the file's rate.
    """
    data, sr = read_audio(path)
    channels, length = data.shape
    notes = []
    wave = data.mean(axis=0, dtype=np.float64) if channels > 1 else data[0]
    if channels > 1:
        notes.append(f"downmixed {channels} channels to mono")
    if target_sr is not None and target_sr != sr:
        if target_sr <= 0:
            raise ValueError(f"target_sr must be positive, got {target_sr}")
        wave = resample(wave, sr, target_sr)
        notes.append(f"resampled {sr} Hz -> {target_sr} Hz")
        if wave.size == 0:
            raise AudioError(path, f"too short to resample ({length} samples at {sr} Hz)")
    info = AudioInfo(str(path), sr, channels, length, notes=tuple(notes))
    return np.ascontiguousarray(wave, dtype=np.float32), info


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The temporary name keeps the target's suffix (so tools that infer formats from it still work). The
    file gets the permissions a plain ``open(path, "w")`` would give. An ``OSError`` of creating, writing,
    syncing or renaming the file (no permission, disk full, read-only file system) is raised naming
    ``path`` (not the temporary file).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        blocker = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise AudioError(path, f"cannot write into {directory}: {blocker} is not a folder")
        raise AudioError(path, f"output folder {directory} does not exist")
    if path.exists() and not path.is_file() and not path.is_symlink():
        # renaming over a device or FIFO (``--force`` onto /dev/null as root) would replace the node
        raise AudioError(path, "exists and is not a regular file (refusing to replace it)")
    try:
        fd, tmp_name = _create_temp(
            directory, f".{path.name}.", (path.suffix if suffix is None else suffix) + ".tmp"
        )
    except OSError as err:
        raise _naming(err, path) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(err, OSError) and err.filename in (None, tmp_name):
            raise _naming(err, path) from None  # a failed write() names no file: name the target
        raise


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` about ``path`` (not the temporary file beside it)."""
    if err.errno is None:
        return err
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))


def _write_problem(directory: Path, exc: Exception) -> str:
    """Why libsndfile could not write: it reports only "System error" for a full disk, so look."""
    try:
        st = os.statvfs(directory)
        if st.f_bavail * st.f_frsize < (1 << 16):
            return os.strerror(errno.ENOSPC)
    except (OSError, AttributeError):
        pass
    msg = str(exc)
    if msg.startswith("Error opening") and ": " in msg:
        msg = msg.split(": ", 1)[1]  # drop the temporary file's name
    if "System error" in msg:  # the C errno of the failed call, which soundfile's cffi keeps
        code = getattr(getattr(sf, "_ffi", None), "errno", 0)
        if isinstance(code, int) and code > 0:
            return os.strerror(code)
    return msg.rstrip(".")


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    fmt = _EXT_FORMATS.get(ext, ext.upper())
    if not ext or fmt not in sf.available_formats():
        raise AudioError(path, f"unsupported output format {path.suffix or '(no extension)'!r}")
    return fmt


def write_audio(path: str | os.PathLike, wave: Any, sr: int, subtype: str = "PCM_16") -> Path:
    """Write ``(samples,)`` or ``(channels, samples)`` audio atomically; format from the file extension.

    Accepts numpy arrays and torch tensors. For integer subtypes the samples are clipped to [-1, 1]
    (libsndfile would otherwise wrap around). NaN/inf samples, an empty wave, a bad rate or a subtype the
    format does not support raise :class:`AudioError` before anything is written. Returns the path.
    """
    path = Path(path)
    if hasattr(wave, "detach"):
        wave = wave.detach().cpu().numpy()
    x = np.asarray(wave)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0 or x.shape[0] == 0:
        raise AudioError(
            path,
            f"cannot write audio of shape {tuple(np.shape(wave))} (want (samples,) or (channels, samples))",
        )
    if x.shape[0] > 64 and x.shape[1] <= 64:
        raise AudioError(path, f"shape {x.shape} looks like (samples, channels); pass (channels, samples)")
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(path, f"cannot write {x.dtype} samples: give floats in [-1, 1]")
    if not np.isfinite(x).all():
        raise AudioError(path, "refusing to write NaN/inf samples")
    if int(sr) != sr or sr <= 0:
        raise AudioError(path, f"invalid sample rate {sr}")
    fmt = _format_for(path)
    if not sf.check_format(fmt, subtype):
        raise AudioError(path, f"format {fmt} does not support subtype {subtype}")
    if subtype.startswith(("PCM", "ALAW", "ULAW", "DPCM", "DWVW")):
        x = np.clip(x, -1.0, 1.0)
    data = np.ascontiguousarray(x.T, dtype=np.float64 if x.dtype == np.float64 else np.float32)
    with atomic_write(path) as tmp:
        try:
            sf.write(str(tmp), data, int(sr), subtype=subtype, format=fmt)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioError(path, f"cannot write audio ({_write_problem(tmp.parent, exc)})") from None
    return path
