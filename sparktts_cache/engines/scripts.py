"""Every script read in its language: a model whose voice spells Chinese letter by letter hands
the sentences it cannot read to one that can.

Piper's voices each speak one language: its bundled English voice reads Chinese as "Chinese
letter, Chinese letter...". :class:`ScriptFallback` wraps such a model: each sentence of a text
in a script the model does not read (Han, kana, Hangul; see :mod:`._scripts`) goes to the
fallback voice of its language (eSpeak NG's by default), and the rest to the model. The audio of
the fallback is resampled to the model's rate, so a response is one stream at one rate.

Which scripts a model reads is its ``scripts`` attribute (a set of ``"han"``, ``"kana"``,
``"hangul"``); a model without one is taken to read them all and is never wrapped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .._core.errors import InvalidOptionError, InvalidParamsError, MissingDependencyError
from ._base import LEVELS, TTSModel, accepted_params
from ._scripts import SCRIPT_LANGUAGES, SCRIPTS, script_of

__all__ = [
    "DEFAULT_FALLBACKS",
    "LANGUAGE_NAMES",
    "ScriptFallback",
    "model_scripts",
    "shared_params",
]

#: The fallback voice of each language by default: eSpeak NG's, which needs no download and reads
#: Latin words inside a Chinese sentence as English itself.
DEFAULT_FALLBACKS: Mapping[str, str] = {"zh": "espeak:cmn", "ja": "espeak:ja", "ko": "espeak:ko"}
#: How messages name each language and its script.
LANGUAGE_NAMES: Mapping[str, str] = {
    "zh": "Chinese (Han script)",
    "ja": "Japanese (kana)",
    "ko": "Korean (Hangul)",
}
# Where a text may be cut between sentences: after a Latin sentence end and its space (or right
# before a CJK character), after a CJK one (which needs no space), and at a line break (a list
# item, a title). A cut in the wrong place (after "Dr.") costs nothing: pieces of
# the same language are joined again before they are read.
_SENTENCE_CUT = re.compile(
    r"(?<=[.!?;…])\s+|(?<=[。！？；])\s*|\n\s*"
    r"|(?<=[.!?])(?=[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af])"  # "Hello.你好"
)


def model_scripts(model: object) -> frozenset[str]:
    """The scripts of :data:`._scripts.SCRIPTS` that ``model`` reads itself: its ``scripts``
    attribute, or all of them for a model that does not say."""
    scripts = getattr(model, "scripts", None)
    return frozenset(SCRIPTS) if scripts is None else frozenset(scripts)


class ScriptFallback:
    """``model``, with each sentence in a script it cannot read spoken by a fallback voice.

    A text is cut into sentences; consecutive sentences with the same reader are joined and read
    in one call, so a text in one language is one call to one voice, as without the wrapper. A
    sentence with Han, kana or Hangul goes to the fallback of its language (the first of kana,
    Hangul, Han found: Han with kana is Japanese) unless ``model`` reads that script itself; the
    fallback gets those of the parameters that mean the same on every engine and that it takes
    (:func:`shared_params`: a Kokoro ``voice`` is no eSpeak voice). Its audio is resampled to
    :attr:`sample_rate` (with soxr) when the rates differ.

    Args:
        model: the voice that reads everything else (and the scripts it names in ``scripts``).
        fallbacks: language (``"zh"``, ``"ja"``, ``"ko"``) -> the model that reads it, or None
            where no voice does: such a text is refused (:meth:`check`).
        on_fallback: called with the language each time a fallback voice speaks (the server's log
            line and metric).

    Raises:
        InvalidOptionError: for a language that is not one of :data:`LANGUAGE_NAMES`.
        MissingDependencyError: if a fallback's rate differs from the model's and soxr (the
            resampler) is not installed.

    Notes:
        ``cache_identity`` holds the model's and each fallback's identity: the same text through a
        wrapped and an unwrapped model are different entries, as they may sound different.
        ``inference`` may run in several threads if the models' may.
    """

    def __init__(
        self,
        model: TTSModel,
        fallbacks: Mapping[str, TTSModel | None],
        *,
        on_fallback: Callable[[str], None] | None = None,
    ) -> None:
        unknown = sorted(set(fallbacks) - set(LANGUAGE_NAMES))
        if unknown:
            raise InvalidOptionError(
                f"no fallback voice can be set for {', '.join(unknown)}: the languages are "
                f"{', '.join(LANGUAGE_NAMES)}"
            )
        self.model = model
        self.fallbacks = dict(fallbacks)
        self.sample_rate: int = int(model.sample_rate)
        self._own = model_scripts(model)
        self._on_fallback = on_fallback
        self._resample = _resampler() if self._needs_resampling() else None
        #: The scripts read, by the model or a fallback.
        self.scripts = self._own | {
            script
            for script, language in SCRIPT_LANGUAGES.items()
            if self.fallbacks.get(language) is not None
        }
        inner = model.inference

        @functools.wraps(inner)  # its signature: LongTextTTS passes what the model accepts
        def inference(text: str, **params: Any) -> npt.NDArray[np.float32]:
            return self._read(text, params)

        self.inference = inference

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The model's identity and each fallback's (None where a language has none)."""
        return {
            "engine": "script-fallback",
            "model": getattr(self.model, "cache_identity", type(self.model).__name__),
            "fallbacks": {
                language: None
                if fallback is None
                else getattr(fallback, "cache_identity", type(fallback).__name__)
                for language, fallback in sorted(self.fallbacks.items())
            },
        }

    def __getattr__(self, name: str) -> Any:
        """The model's other attributes (Kokoro's ``voice_names``...): this is the model, with
        fallback voices."""
        if name == "model":  # not set yet: never look it up on itself
            raise AttributeError(name)
        return getattr(self.model, name)

    def fallback_language(self, text: str) -> str | None:
        """The language of the fallback that reads ``text``; None if the model reads it."""
        script = script_of(text)
        if script is None or script in self._own:
            return None
        return SCRIPT_LANGUAGES[script]

    def check(self, text: str) -> None:
        """Raise if a sentence of ``text`` is in a script that no voice here reads.

        Raises:
            InvalidParamsError: naming the language, and how to give it a voice.
        """
        for _reader, piece in self._pieces(text):
            language = self.fallback_language(piece)
            if language is not None and self.fallbacks.get(language) is None:
                raise InvalidParamsError(
                    f"no voice here reads {LANGUAGE_NAMES[language]}: this voice "
                    f"({_name(self.model)}) spells it letter by letter, and no fallback voice is "
                    f"set for {language!r} (the server's voices file sets one in [languages])"
                )

    def _read(self, text: str, params: Mapping[str, Any]) -> npt.NDArray[np.float32]:
        self.check(text)
        parts: list[npt.NDArray[np.float32]] = []
        for language, piece in self._pieces(text):
            if language is None:
                audio = self.model.inference(piece, **params)
                parts.append(np.asarray(audio, dtype=np.float32).reshape(-1))
                continue
            fallback = self.fallbacks[language]
            assert fallback is not None  # checked above
            audio = np.asarray(
                fallback.inference(piece, **accepted_params(fallback, shared_params(params))),
                dtype=np.float32,
            ).reshape(-1)
            if self._on_fallback is not None:
                self._on_fallback(language)
            if int(fallback.sample_rate) != self.sample_rate:
                assert self._resample is not None
                audio = self._resample(audio, int(fallback.sample_rate), self.sample_rate)
            parts.append(audio)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _pieces(self, text: str) -> list[tuple[str | None, str]]:
        """``text`` as runs of sentences with one reader each: (language of the fallback or
        None for the model, the run's text). Linear in the text: each run is joined once."""
        runs: list[tuple[str | None, list[str]]] = []
        start = 0
        for cut in [*_SENTENCE_CUT.finditer(text), None]:
            stop = len(text) if cut is None else cut.start()
            sentence = text[start:stop]
            if cut is not None:
                start = cut.end()
            if not sentence.strip():
                continue
            language = self.fallback_language(sentence)
            if runs and runs[-1][0] == language:
                runs[-1][1].append(sentence)
            else:
                runs.append((language, [sentence]))
        return [(language, " ".join(run)) for language, run in runs] or [(None, text)]

    def _needs_resampling(self) -> bool:
        return any(
            fallback is not None and int(fallback.sample_rate) != self.sample_rate
            for fallback in self.fallbacks.values()
        )


def shared_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that mean the same on every engine: Spark-TTS's ``gender``, and ``pitch``
    and ``speed`` as level names (a number is a factor of one engine's own pace)."""
    return {
        name: value
        for name, value in params.items()
        if name == "gender" or (name in ("pitch", "speed") and value in LEVELS)
    }


def _name(model: object) -> str:
    return str(getattr(model, "name", type(model).__name__))


def _resampler() -> Callable[[npt.NDArray[np.float32], int, int], npt.NDArray[np.float32]]:
    try:
        import soxr
    except ImportError as exc:
        raise MissingDependencyError(
            "a fallback voice at another sample rate needs soxr (the resampler): "
            f'pip install soxr, or "sparktts_cache[piper]" ({exc})'
        ) from exc

    def resample(audio: npt.NDArray[np.float32], rate: int, target: int) -> npt.NDArray[np.float32]:
        out: npt.NDArray[np.float32] = np.asarray(
            soxr.resample(audio, rate, target, quality="HQ"), dtype=np.float32
        )
        return out

    return resample
