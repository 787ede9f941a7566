"""An adapter around upstream Spark-TTS's ``SparkTTS(model_dir, device)``.

Spark-TTS is found either as the upstream repository's ``cli.SparkTTS`` module on ``sys.path`` or as
the ``spark_tts_lib`` package (``pip install "sparktts_cache[spark]"``). Both are imported only
when a model is loaded; torch and the model weights are needed then, never before.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._errors import EngineError, InvalidOptionError, MissingDependencyError
from ._base import GENDERS, LEVELS, check_choice

__all__ = ["SparkTTSModel", "find_spark_tts"]

_INSTALL_HINT = (
    'Spark-TTS is not installed: pip install "sparktts_cache[spark]" (spark-tts-lib and torch), '
    "or put a checkout of the SparkAudio/Spark-TTS repository on sys.path"
)


def find_spark_tts() -> type[Any]:
    """Return upstream's ``SparkTTS`` class, from ``cli.SparkTTS`` or ``spark_tts_lib``.

    Raises:
        MissingDependencyError: if neither is importable; the message says what to install.
    """
    errors = []
    for module_name in ("cli.SparkTTS", "spark_tts_lib"):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        found = getattr(module, "SparkTTS", None)
        if isinstance(found, type):
            return found
        errors.append(f"{module_name}: has no SparkTTS class")
    raise MissingDependencyError(f"{_INSTALL_HINT} ({'; '.join(errors)})")


class SparkTTSModel:
    """Spark-TTS behind the :class:`~sparktts_cache.engines.TTSModel` interface.

    With ``gender`` set Spark-TTS is "controllable TTS" and needs ``pitch`` and ``speed`` too
    (``moderate`` is used for whichever is missing); without it, it clones the voice in
    ``prompt_speech_path``. Spark-TTS has no ``emotion`` control: such parameters only count in the
    cache key. Samples are random: the cache is what keeps a voice stable across requests.

    Args:
        model_dir: the model directory (holding ``config.yaml``).
        device: a torch device or its name (``"cuda:0"``, ``"cpu"``).

    Raises:
        InvalidOptionError: if ``model_dir`` is not a directory.
        MissingDependencyError: if Spark-TTS or torch is not installed.
        EngineError: if upstream fails to load the model (its error is chained).
    """

    name: ClassVar[str] = "spark-tts"

    def __init__(self, model_dir: str | os.PathLike[str], device: Any = "cpu") -> None:
        self.model_dir = os.fspath(model_dir)
        if not os.path.isdir(self.model_dir):
            raise InvalidOptionError(f"no Spark-TTS model directory at {self.model_dir!r}")
        spark_class = find_spark_tts()
        if isinstance(device, str):
            try:
                import torch
            except ImportError as exc:
                raise MissingDependencyError(f"{_INSTALL_HINT} (torch is missing)") from exc
            device = torch.device(device)
        try:
            self._model = spark_class(self.model_dir, device)
        except Exception as exc:
            raise EngineError(
                f"Spark-TTS failed to load {self.model_dir!r}: {type(exc).__name__}: {exc}"
            ) from exc
        self.sample_rate: int = int(self._model.sample_rate)

    @property
    def cache_identity(self) -> dict[str, Any]:
        return {"engine": "spark-tts", "model_dir": os.path.abspath(self.model_dir)}

    def inference(
        self,
        text: str,
        prompt_speech_path: str | None = None,
        prompt_text: str | None = None,
        gender: str | None = None,
        pitch: str | None = None,
        speed: str | None = None,
        temperature: float = 0.8,
        top_k: int = 50,
        top_p: float = 0.95,
    ) -> npt.NDArray[np.float32]:
        """Synthesise ``text`` with upstream's ``inference``; return mono float32 samples.

        Raises:
            InvalidParamsError: if ``gender``, ``pitch`` or ``speed`` is not one of Spark-TTS's
                values (upstream would fail deep inside, with a bare ``KeyError``).
            EngineError: if upstream fails (its error is chained).
        """
        check_choice("gender", gender, GENDERS)
        check_choice("pitch", pitch, LEVELS)
        check_choice("speed", speed, LEVELS)
        if gender is not None:
            pitch = pitch or "moderate"
            speed = speed or "moderate"
        try:
            wav = self._model.inference(
                text,
                prompt_speech_path=prompt_speech_path,
                prompt_text=prompt_text,
                gender=gender,
                pitch=pitch,
                speed=speed,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
            )
        except Exception as exc:
            raise EngineError(f"Spark-TTS failed: {type(exc).__name__}: {exc}") from exc
        if hasattr(wav, "detach"):  # a torch tensor
            wav = wav.detach().cpu().numpy()
        return np.asarray(wav, dtype=np.float32).reshape(-1)
