"""eSpeak NG, embedded: the ``espeakng-loader`` wheel ships ``libespeak-ng`` and its data.

Install with ``pip install "sparktts_cache[espeak]"``. The library is called through ctypes in
synchronous mode; it keeps global state, so calls are serialised by a process-wide lock.
"""

from __future__ import annotations

import ctypes
import threading
from importlib import metadata
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._core.errors import EngineError, InvalidOptionError, MissingDependencyError
from ._base import GENDERS, LEVELS, check_choice

__all__ = ["LEVELS", "EspeakModel"]

_PITCH = dict(zip(LEVELS, (20, 35, 50, 65, 80), strict=True))  # eSpeak pitch, 0-100
_RATE = dict(zip(LEVELS, (120, 150, 175, 210, 250), strict=True))  # words per minute
_VARIANT = dict(zip(GENDERS, ("f3", "m3"), strict=True))

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_lock = threading.Lock()
_library: Any = None
_sample_rate = 0
_version = ""
_chunks: list[npt.NDArray[np.int16]] = []


@_SYNTH_CALLBACK  # type: ignore[untyped-decorator]
def _collect(wav: Any, samples: int, _events: Any) -> int:
    if samples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(samples,)).copy())
    return 0


def _load() -> tuple[Any, int]:
    """Load and initialise libespeak-ng once per process (call with ``_lock`` held)."""
    global _library, _sample_rate, _version
    if _library is None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise MissingDependencyError(
                'the eSpeak engine needs espeakng-loader: pip install "sparktts_cache[espeak]"'
            ) from exc
        library = ctypes.CDLL(espeakng_loader.get_library_path())
        library.espeak_Initialize.restype = ctypes.c_int
        library.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        library.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        library.espeak_Info.restype = ctypes.c_char_p
        library.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        library.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise EngineError("eSpeak NG failed to initialise")
        library.espeak_SetSynthCallback(_collect)
        data_path = ctypes.c_char_p()
        _version = (library.espeak_Info(ctypes.byref(data_path)) or b"").decode(errors="replace")
        _library, _sample_rate = library, rate
    return _library, _sample_rate


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _level(name: str, value: object, table: dict[str, int]) -> int:
    return table[check_choice(name, value, LEVELS) or "moderate"]


class EspeakModel:
    """A real TTS engine that needs no model download, with Spark-TTS's parameter names.

    ``gender`` picks a voice variant (female ``+f3``, male ``+m3``); the levels ``very_low`` to
    ``very_high`` of ``pitch`` and ``speed`` map to eSpeak's pitch (20-80) and rate (120-250 words
    per minute). Spark-TTS's other parameters (``prompt_speech_path``, ``temperature``...) have no
    meaning here and are ignored, though they still count in the cache key.

    Args:
        voice: an eSpeak voice name (``"en"``, ``"en-us"``, ``"cmn"`` for Mandarin...).

    Raises:
        MissingDependencyError: if ``espeakng-loader`` is not installed.
        InvalidOptionError: if eSpeak has no such voice (checked here, not at the first call).
    """

    name: ClassVar[str] = "espeak"

    def __init__(self, voice: str = "en") -> None:
        with _lock:
            library, rate = _load()
            if library.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise InvalidOptionError(f"eSpeak has no voice {voice!r}")
        self.voice = voice
        self.sample_rate: int = rate
        #: libespeak-ng's version, as ``espeak_Info`` reports it (``"1.52.0"``).
        self.library_version: str = _version
        #: The version of the espeakng-loader wheel that ships the library's data.
        self.data_version: str = "espeakng-loader " + _package_version("espeakng-loader")

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The library's version (``espeak_Info``), the data's (the espeakng-loader wheel that
        ships it, read once per process) and the voice: a new eSpeak NG pronounces differently."""
        return {
            "engine": "espeak-ng",
            "version": self.library_version,
            "data": self.data_version,
            "voice": self.voice,
            "sample_rate": self.sample_rate,
        }

    def inference(
        self,
        text: str,
        gender: str | None = None,
        pitch: str | None = None,
        speed: str | None = None,
    ) -> npt.NDArray[np.float32]:
        """Synthesise ``text``; return mono float32 samples at :attr:`sample_rate`.

        Raises:
            InvalidParamsError: if ``gender``, ``pitch`` or ``speed`` is not one of Spark-TTS's
                values (``GENDERS`` and ``LEVELS`` in :mod:`sparktts_cache.engines`).
            EngineError: if eSpeak NG fails.
        """
        check_choice("gender", gender, GENDERS)
        voice = self.voice + (f"+{_VARIANT[gender]}" if gender else "")
        encoded = text.encode("utf-8") + b"\0"
        with _lock:
            library, _rate = _load()
            if library.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise EngineError(f"eSpeak could not select voice {voice!r}")
            library.espeak_SetParameter(_ESPEAK_PITCH, _level("pitch", pitch, _PITCH), 0)
            library.espeak_SetParameter(_ESPEAK_RATE, _level("speed", speed, _RATE), 0)
            _chunks.clear()
            status = library.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
            _chunks.clear()
        if status != _EE_OK:
            raise EngineError(f"eSpeak synthesis failed with status {status}")
        samples: npt.NDArray[np.float32] = pcm.astype(np.float32) / np.float32(32768.0)
        return samples
