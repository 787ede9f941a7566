"""TTS engines behind :class:`~sparktts_cache.LongTextTTS`, and :func:`load_tts_model`.

An engine is one module of this package and one line in ``_ENGINES``: its name and where its class
(or any factory returning a :class:`TTSModel`) lives, as ``"module:attribute"``. The module is
imported only when the engine is loaded, so importing ``sparktts_cache`` never imports an engine's
dependencies (torch, a native library...), and a missing one only fails the engine that needs it.
(``EspeakModel``, ``PiperModel``, ``KokoroModel`` and ``SparkTTSModel`` are re-exported here too:
their modules import their dependencies only when a model is made.)
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from .._core.errors import CacheError, InvalidOptionError, MissingDependencyError
from ._base import GENDERS, LEVELS, NamedVoices, TTSModel, accepted_params, check_choice
from ._scripts import SCRIPT_LANGUAGES
from .espeak import EspeakModel
from .kokoro import KokoroModel
from .piper import PiperModel
from .scripts import DEFAULT_FALLBACKS, LANGUAGE_NAMES, ScriptFallback, model_scripts
from .spark import SparkTTSModel

__all__ = [
    "DEFAULT_FALLBACKS",
    "GENDERS",
    "LANGUAGE_NAMES",
    "LEVELS",
    "SCRIPT_LANGUAGES",
    "EspeakModel",
    "KokoroModel",
    "NamedVoices",
    "PiperModel",
    "ScriptFallback",
    "SparkTTSModel",
    "TTSModel",
    "accepted_params",
    "check_choice",
    "engine_names",
    "load_tts_model",
    "model_scripts",
    "with_fallbacks",
]

log = logging.getLogger(__name__)

#: Engine name -> ``"module:attribute"`` of its factory (a module name relative to this package).
#: ``load_tts_model("NAME")`` calls ``factory(**options)``; ``load_tts_model("NAME:ARGUMENT")``
#: calls ``factory(ARGUMENT, **options)``: eSpeak's voice, Spark-TTS's model directory.
_ENGINES: dict[str, str] = {
    "espeak": ".espeak:EspeakModel",
    "spark": ".spark:SparkTTSModel",
    "piper": ".piper:PiperModel",
    "kokoro": ".kokoro:KokoroModel",
}
#: The engine that a bare directory means, as it did before engines had names.
_DIRECTORY_ENGINE = "spark"


def engine_names() -> list[str]:
    """The names :func:`load_tts_model` accepts (before an optional ``:ARGUMENT``), sorted."""
    return sorted(_ENGINES)


def load_tts_model(name_or_dir: str | os.PathLike[str] = "espeak", **options: Any) -> TTSModel:
    """Return the TTS engine named ``name_or_dir``, made with ``options``.

    Example::

        load_tts_model("espeak")                                 # eSpeak NG, voice by script
        load_tts_model("espeak:cmn")                             # its Mandarin voice only
        load_tts_model("piper")                                  # Piper, its bundled voice
        load_tts_model("piper:voices/en_GB-alan-medium.onnx")    # any Piper voice file
        load_tts_model("spark:pretrained_models/Spark-TTS-0.5B", device="cuda:0")

    Args:
        name_or_dir: an engine name (see :func:`engine_names`), ``NAME:ARGUMENT`` to pass
            ``ARGUMENT`` as the engine's first argument, or an existing directory, which means
            ``spark:<directory>``. A name wins over a directory of the same name (write
            ``./espeak`` for the directory); a path object always means a directory.
        options: keyword arguments of the engine's class (``voice=`` for eSpeak, ``device=`` for
            Spark-TTS, ``config_path=`` and ``intra_op_num_threads=`` for Piper).

    Raises:
        InvalidOptionError: for an unknown name (the message lists the known ones), a directory
            that does not exist, or options the engine does not take.
        MissingDependencyError: if the engine's packages are missing; the message says what to
            install.
        EngineError: if a bundled engine fails to load.
    """
    spec = os.fspath(name_or_dir)
    name, colon, argument = spec.partition(":")
    if isinstance(name_or_dir, str) and name in _ENGINES:
        if colon and not argument:
            raise InvalidOptionError(f"engine {spec!r}: nothing after the ':'")
        return _make(name, (argument,) if colon else (), options)
    if os.path.isdir(spec):
        return _make(_DIRECTORY_ENGINE, (spec,), options)
    raise InvalidOptionError(
        f"no TTS engine named {spec!r} and no directory there: use one of "
        f"{', '.join(engine_names())}, NAME:ARGUMENT (for example spark:<model_dir>), "
        "or a Spark-TTS model directory"
    )


def _make(name: str, args: tuple[str, ...], options: dict[str, Any]) -> TTSModel:
    factory = _factory(name)
    signature = inspect.signature(factory)
    try:
        signature.bind(*args, **options)
    except TypeError as exc:  # checked before the call, so the engine's own TypeErrors pass through
        hint = ""
        with contextlib.suppress(TypeError):
            if not args and signature.bind("", **options):
                hint = f" (write {name}:ARGUMENT to pass its first argument)"
        raise InvalidOptionError(f"engine {name!r}: {exc}{hint}") from None
    model: TTSModel = factory(*args, **options)
    return model


def _factory(name: str) -> Callable[..., TTSModel]:
    """Import the engine's module (on first use) and return its factory."""
    module_name, _, attribute = _ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name, __name__)
    except ImportError as exc:
        if isinstance(exc, CacheError):
            raise
        raise MissingDependencyError(f"engine {name!r} cannot be imported: {exc}") from exc
    factory: Callable[..., TTSModel] = getattr(module, attribute)
    return factory


def with_fallbacks(
    model: TTSModel,
    languages: Mapping[str, str | None] | None = None,
    *,
    on_fallback: Callable[[str], None] | None = None,
) -> TTSModel:
    """``model``, with a fallback voice for each language whose script it spells letter by letter.

    Example::

        piper = with_fallbacks(load_tts_model("piper"))   # Chinese read by eSpeak's cmn voice

    Args:
        model: the voice; returned as it is if it reads Han, kana and Hangul itself (its
            ``scripts``) or no language needs a fallback.
        languages: language (``"zh"``, ``"ja"``, ``"ko"``) -> the engine that reads it, as
            :func:`load_tts_model` takes it (``"espeak:cmn"``, ``"piper:zh_CN-huayan.onnx"``), or
            None for none (such a text is then refused, naming the language). A language not
            named keeps its default, :data:`DEFAULT_FALLBACKS`, which is left out, with a
            warning, where its engine cannot be loaded here.
        on_fallback: see :class:`ScriptFallback`.

    Raises:
        InvalidOptionError, MissingDependencyError, EngineError: loading an engine that
            ``languages`` names.
    """
    own = model_scripts(model)
    needed = {language for script, language in SCRIPT_LANGUAGES.items() if script not in own}
    named = dict(languages or {})
    chosen = {**DEFAULT_FALLBACKS, **named}
    if not needed:
        return model
    loaded: dict[str, TTSModel] = {}
    fallbacks: dict[str, TTSModel | None] = {}
    for language in sorted(needed):
        spec = chosen.get(language)
        if not spec:
            fallbacks[language] = None
            continue
        if spec not in loaded:
            try:
                loaded[spec] = load_tts_model(spec)
            except MissingDependencyError as exc:
                if language in named:
                    raise
                log.warning("no fallback voice for %s: %s", LANGUAGE_NAMES[language], exc)
                fallbacks[language] = None
                continue
        fallbacks[language] = loaded[spec]
    return ScriptFallback(model, fallbacks, on_fallback=on_fallback)
