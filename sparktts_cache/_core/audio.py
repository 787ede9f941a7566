"""Validation of the audio a caller hands to the cache."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import InvalidAudioError, UnsupportedTypeError

__all__ = ["MAX_SAMPLE_RATE", "as_mono_float32", "check_sample_rate"]

MAX_SAMPLE_RATE = 768_000

_INT16_SCALE = np.float32(1.0 / 32768.0)


def as_mono_float32(audio: object) -> npt.NDArray[np.float32]:
    """Return ``audio`` as a 1-D, C-contiguous, little-endian float32 array.

    Accepts a 1-D or ``(n, 1)`` ndarray of float32, float64 (converted to float32) or int16 (scaled
    to [-1, 1)). The input is never modified.

    Raises:
        UnsupportedTypeError: if ``audio`` is not an ndarray or has another dtype.
        InvalidAudioError: if it is empty, has more than one channel, or holds NaN or infinity
            (including float64 values beyond float32's range).
    """
    if not isinstance(audio, np.ndarray):
        raise UnsupportedTypeError(f"audio must be a numpy ndarray, not {type(audio).__name__}")
    if audio.ndim == 2 and audio.shape[1] == 1:
        audio = audio[:, 0]
    if audio.ndim != 1:
        raise InvalidAudioError(f"audio must be mono: 1-D or (n, 1), got shape {audio.shape}")
    if audio.size == 0:
        raise InvalidAudioError("audio is empty")
    kind, itemsize = audio.dtype.kind, audio.dtype.itemsize
    if kind == "f" and itemsize in (4, 8):
        with np.errstate(over="ignore"):
            samples = np.ascontiguousarray(audio, dtype="<f4")
    elif kind == "i" and itemsize == 2:
        samples = np.ascontiguousarray(audio, dtype="<f4")
        samples *= _INT16_SCALE
    else:
        raise UnsupportedTypeError(
            f"audio dtype must be float32, float64 or int16, got {audio.dtype}"
        )
    if not np.isfinite(samples).all():
        raise InvalidAudioError(
            "audio holds NaN or infinite samples (or float64 beyond float32 range)"
        )
    return samples


def check_sample_rate(sample_rate: object) -> int:
    """Return ``sample_rate`` if it is an int in 1..768000 Hz; raise otherwise."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise UnsupportedTypeError(f"sample_rate must be an int, not {type(sample_rate).__name__}")
    if not 0 < sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"sample_rate must be in 1..{MAX_SAMPLE_RATE} Hz, got {sample_rate}"
        )
    return int(sample_rate)
