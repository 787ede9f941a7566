"""TTS engines behind :class:`~sparktts_cache.LongTextTTS`, and :func:`load_tts_model`."""

from __future__ import annotations

import os
from typing import Any

from ._base import TTSModel, accepted_params
from .espeak import EspeakModel
from .piper import PiperModel
from .spark import SparkTTSModel

__all__ = [
    "EspeakModel",
    "PiperModel",
    "SparkTTSModel",
    "TTSModel",
    "accepted_params",
    "load_tts_model",
]


def load_tts_model(name_or_dir: str | os.PathLike[str] = "espeak", **options: Any) -> TTSModel:
    """Return a TTS model: ``"espeak"`` (embedded eSpeak NG), ``"piper"`` (Piper, its bundled
    voice or ``"piper:path/to/voice.onnx"``) or a Spark-TTS model directory.

    Args:
        name_or_dir: ``"espeak"``, ``"piper"``, ``"piper:<voice.onnx>"``, or the path of a
            Spark-TTS model directory (for example ``pretrained_models/Spark-TTS-0.5B``).
        options: passed to the model's constructor (``voice=`` for eSpeak and Piper, ``device=``
            for Spark).

    Raises:
        ImportError: if the engine's packages are missing; the message says what to install.
        FileNotFoundError: if a model directory does not exist.
    """
    if os.fspath(name_or_dir) == "espeak":
        return EspeakModel(**options)
    if os.fspath(name_or_dir) == "piper":
        return PiperModel(**options)
    if os.fspath(name_or_dir).startswith("piper:"):  # "piper:<voice.onnx>"
        return PiperModel(os.fspath(name_or_dir).removeprefix("piper:"), **options)
    path = os.fspath(name_or_dir)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"no TTS engine named {path!r}: use 'espeak' or a Spark-TTS model directory"
        )
    return SparkTTSModel(path, **options)
