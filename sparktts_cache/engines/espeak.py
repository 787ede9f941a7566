"""eSpeak NG, embedded: the ``espeakng-loader`` wheel ships ``libespeak-ng`` and its data.

Install with ``pip install "sparktts_cache[espeak]"``. The library is called through ctypes in
synchronous mode; it keeps global state, so calls are serialised by a process-wide lock.
"""

from __future__ import annotations

import ctypes
import re
import threading
from importlib import metadata
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._core.errors import (
    EngineError,
    InvalidOptionError,
    InvalidParamsError,
    MissingDependencyError,
)
from ._base import GENDERS, LEVELS, check_choice
from ._scripts import SCRIPTS, script_of, scripts_of_espeak_voice
from ._spoken_numbers import FRONT_END_VERSION, applies_to, spell_for_espeak

__all__ = ["LEVELS", "SCRIPT_VOICES", "EspeakModel", "reported_voice", "voice_for_text"]

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

#: The voice a segment is read with when none is chosen, by its script (see
#: :func:`~sparktts_cache.engines._scripts.script_of`: kana with Han is Japanese); a segment in none
#: of them is read by ``"en"``. The Mandarin voice reads Latin words as English itself ("latin as
#: English", eSpeak's own description), so a mixed Chinese and English segment is one ``cmn`` call.
SCRIPT_VOICES: tuple[tuple[str, str], ...] = (
    ("kana", "ja"),
    ("hangul", "ko"),
    ("han", "cmn"),
)
#: The voice of a segment in none of the scripts of SCRIPT_VOICES (Latin, digits, punctuation).
DEFAULT_VOICE = "en"
#: What a ``voice`` parameter may be: an eSpeak voice or language name (``en-us``, ``cmn``,
#: ``sit/yue``), without a ``+variant`` (``gender`` picks that).
_VOICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}(/[A-Za-z0-9_-]{1,40})?")


class _Voice(ctypes.Structure):
    """``espeak_VOICE``, as ``espeak_GetCurrentVoice`` returns it."""

    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
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
        library.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
        library.espeak_GetCurrentVoice.argtypes = []
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


def voice_for_text(text: str) -> str:
    """The eSpeak voice that reads ``text`` when none is chosen: by its script.

    Han (without kana) gives ``"cmn"`` (Mandarin, which reads Latin words as English), kana
    ``"ja"``, Hangul ``"ko"``, anything else ``"en"``. A pure function of the text, so the cache
    key (which holds the text) stays right without naming the voice.
    """
    script = script_of(text)
    return dict(SCRIPT_VOICES)[script] if script else DEFAULT_VOICE


def reported_voice() -> dict[str, str]:
    """The voice eSpeak NG last selected, as it reports it (``espeak_GetCurrentVoice``).

    ``{"name": "Chinese (Mandarin, latin as English)", "language": "cmn", "identifier":
    "sit/cmn"}``: what a test checks to know which voice really spoke, not which was asked for.
    """
    with _lock:
        library, _rate = _load()
        voice = library.espeak_GetCurrentVoice().contents
        languages = voice.languages or b""
        return {
            "name": (voice.name or b"").decode(errors="replace"),
            # a priority byte, then the language name, NUL-terminated
            "language": languages[1:].decode(errors="replace"),
            "identifier": (voice.identifier or b"").decode(errors="replace"),
        }


class EspeakModel:
    """A real TTS engine that needs no model download, with Spark-TTS's parameter names.

    Each text is read by the voice of its script unless a voice is chosen (see
    :func:`voice_for_text`): Chinese by ``cmn``, English by ``en``. ``gender`` picks a voice
    variant (female ``+f3``, male ``+m3``); the levels ``very_low`` to ``very_high`` of ``pitch``
    and ``speed`` map to eSpeak's pitch (20-80) and rate (120-250 words per minute). Spark-TTS's
    other parameters (``prompt_speech_path``, ``temperature``...) have no meaning here and are
    ignored, though they still count in the cache key.

    Args:
        voice: an eSpeak voice name (``"en"``, ``"en-us"``, ``"cmn"`` for Mandarin...) that reads
            every text; None (the default) chooses by each text's script.

    Raises:
        MissingDependencyError: if ``espeakng-loader`` is not installed.
        InvalidOptionError: if eSpeak has no such voice (checked here, not at the first call).
    """

    name: ClassVar[str] = "espeak"

    def __init__(self, voice: str | None = None) -> None:
        with _lock:
            library, rate = _load()
            if voice is not None and not _selects(library, voice):
                raise InvalidOptionError(f"eSpeak has no voice {voice!r}")
        self.voice = voice
        self.sample_rate: int = rate
        #: Every script, by its voice, when none is chosen; a chosen voice reads its own.
        self.scripts: frozenset[str] = (
            frozenset(SCRIPTS) if voice is None else scripts_of_espeak_voice(voice)
        )
        #: libespeak-ng's version, as ``espeak_Info`` reports it (``"1.52.0"``).
        self.library_version: str = _version
        #: The version of the espeakng-loader wheel that ships the library's data.
        self.data_version: str = "espeakng-loader " + _package_version("espeakng-loader")

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The library's version (``espeak_Info``), the data's (the espeakng-loader wheel that
        ships it, read once per process), the voice, and the version of the rewriting of currency,
        dates, ranges and units an English voice reads (``_spoken_numbers``): a new eSpeak NG, or
        a new rewriting, pronounces differently.

        Without a chosen voice, ``voice`` is the choice by script itself (``SCRIPT_VOICES`` and the
        default), so a change of that table changes the keys of the texts it may concern; a
        ``voice`` parameter counts in the key as every parameter does.
        """
        voice: str | dict[str, str] = self.voice or {
            **dict(SCRIPT_VOICES),
            "other": DEFAULT_VOICE,
        }
        return {
            "engine": "espeak-ng",
            "version": self.library_version,
            "data": self.data_version,
            "voice": voice,
            "sample_rate": self.sample_rate,
            "front_end": FRONT_END_VERSION,
        }

    def inference(
        self,
        text: str,
        gender: str | None = None,
        pitch: str | None = None,
        speed: str | None = None,
        voice: str | None = None,
    ) -> npt.NDArray[np.float32]:
        """Synthesise ``text``; return mono float32 samples at :attr:`sample_rate`.

        ``voice`` (an eSpeak voice name) overrides the model's voice, and the choice by script.

        Raises:
            InvalidParamsError: if ``gender``, ``pitch`` or ``speed`` is not one of Spark-TTS's
                values (``GENDERS`` and ``LEVELS`` in :mod:`sparktts_cache.engines`), or eSpeak
                has no such ``voice``.
            EngineError: if eSpeak NG fails.
        """
        check_choice("gender", gender, GENDERS)
        if voice is not None and not (isinstance(voice, str) and _VOICE_NAME.fullmatch(voice)):
            raise InvalidParamsError(f"voice must be an eSpeak voice name, got {voice!r}")
        name = voice or self.voice or voice_for_text(text)
        variant = f"+{_VARIANT[gender]}" if gender else ""
        spoken = spell_for_espeak(text) if applies_to(name) else text  # "$5.50", "10 km"...
        encoded = spoken.encode("utf-8") + b"\0"
        with _lock:
            library, _rate = _load()
            if not _selects(library, name + variant):
                if voice is not None and not _selects(library, voice):
                    raise InvalidParamsError(f"eSpeak has no voice {voice!r}")
                raise EngineError(f"eSpeak could not select voice {name + variant!r}")
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


def _selects(library: Any, voice: str) -> bool:
    """Select ``voice`` in eSpeak (call with ``_lock`` held); False if it has no such voice."""
    return bool(library.espeak_SetVoiceByName(voice.encode()) == _EE_OK)
