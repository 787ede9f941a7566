"""Voices made real: each :class:`VoiceSpec` bound to a loaded engine and its ``LongTextTTS``.

Engines are loaded once per distinct (engine, options) pair and shared by the voices that name
them; each gets one ``LongTextTTS`` over a cache at its sample rate, in the same directory as the
command line's (the entries are the same), with the file lock (or, with ``--redis``, a Redis tier
and the Redis lock) so that processes sharing it synthesise each segment once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparktts_cache import (
    CircuitBreaker,
    InvalidOptionError,
    InvalidParamsError,
    LongTextTTS,
    RedisCache,
    RedisSynthesisLock,
    TieredCache,
    TTSCache,
    engine_names,
    generate_cache_key,
    load_tts_model,
)
from sparktts_cache.engines import LANGUAGE_NAMES, NamedVoices, accepted_params, with_fallbacks

from .config import FIXED_SPEED, OPENAI_VOICES, ServerConfig, VoiceSpec
from .metrics import Metrics, counted_model

__all__ = [
    "Voice",
    "engine_kind",
    "engine_voice",
    "listed_voice",
    "load_voice_engines",
    "openai_voice_for",
]

log = logging.getLogger("sparktts_cache.server")


@dataclass
class Voice:
    """A voice clients may ask for: its engine's ``LongTextTTS`` and the parameters it passes.

    ``identity`` is the voice's cache key of a fixed probe text: it covers the engine's identity
    and every parameter (a prompt file by content), and so names the voice in response keys.
    """

    spec: VoiceSpec
    long_text: LongTextTTS
    params: dict[str, Any]
    identity: str
    engine: str
    #: What ``/v1/audio/voices`` says of it (see :func:`describe_voices`).
    description: str = ""

    def check_text(self, text: str) -> None:
        """Refuse a text in a script that neither this voice nor a fallback voice reads.

        Raises:
            InvalidParamsError: naming the language (see ``ScriptFallback.check``).
        """
        check = getattr(self.long_text.model, "check", None)
        if check is not None:
            check(text)


def engine_kind(engine: str) -> str:
    """The engine's name without its argument (a model directory is ``spark``): what metrics and
    ``/v1/audio/voices`` show, never a path."""
    name = engine.partition(":")[0]
    return name if name in engine_names() else "spark"


def load_voice_engines(
    config: ServerConfig,
    specs: dict[str, VoiceSpec],
    metrics: Metrics,
    segment_budget: int | None,
    languages: dict[str, str | None] | None = None,
) -> dict[str, Voice]:
    """Load every engine the voices name (blocking: minutes for Spark-TTS) and bind the voices.

    An engine that spells Han, kana or Hangul letter by letter (Piper's English voice) gets a
    fallback voice per language (``languages``, the voices file's ``[languages]``; None: eSpeak's
    voices): see :func:`sparktts_cache.engines.with_fallbacks`. Each time one speaks, a log line
    and ``sparktts_fallback_segments_total{language, engine}``.

    Raises:
        InvalidOptionError: a voice with a parameter its engine does not take, or one that
            cannot be keyed (a prompt file that is not a readable regular file...).
        MissingDependencyError, EngineError: from loading an engine.
    """
    engines: dict[str, LongTextTTS] = {}
    voices: dict[str, Voice] = {}
    for name, spec in specs.items():
        engine_key = json.dumps([spec.engine, spec.engine_options], sort_keys=True)
        long_text = engines.get(engine_key)
        if long_text is None:
            model = load_tts_model(spec.engine, **spec.engine_options)
            model = with_fallbacks(
                model, languages, on_fallback=_fallback_reporter(metrics, spec.engine)
            )
            model = counted_model(model, metrics, engine_kind(spec.engine))
            long_text = engines[engine_key] = _long_text(config, model, metrics, segment_budget)
        params = accepted_params(long_text.model, spec.params)
        if not spec.openai and params != {k: v for k, v in spec.params.items() if v is not None}:
            unknown = sorted(set(spec.params) - set(params))
            raise InvalidOptionError(
                f"voice {name!r}: its engine takes no parameter {', '.join(unknown)}"
            )
        if spec.openai and isinstance(long_text.model, NamedVoices):
            params["voice"] = openai_voice_for(name, spec, long_text.model.voice_names())
        voices[name] = _bound(spec, long_text, params)
    default = engines.get(json.dumps([config.engine, {}], sort_keys=True))
    if default is not None and isinstance(default.model, NamedVoices):
        for name in default.model.voice_names():  # Kokoro's own names, as its clients send them
            if name not in voices:
                voices[name] = engine_voice(config, default, name)
    describe_voices(voices)
    return voices


def _bound(spec: VoiceSpec, long_text: LongTextTTS, params: dict[str, Any]) -> Voice:
    identity = generate_cache_key("voice identity", long_text.key_params(params))
    return Voice(spec, long_text, params, identity, engine_kind(spec.engine))


def engine_voice(config: ServerConfig, long_text: LongTextTTS, name: str) -> Voice:
    """A voice of the default engine's own, by the name the engine gives it: a Kokoro voice or
    blend (``jf_alpha``, ``jf_alpha+jm_kumo``), with the fixed speed OpenAI's names have.

    Raises:
        InvalidParamsError: if the engine has no such voice (or the blend is malformed).
    """
    if not isinstance(long_text.model, NamedVoices):
        raise InvalidParamsError(f"no voice {name!r} here")
    long_text.model.check_voice(name)
    params = accepted_params(long_text.model, {**FIXED_SPEED, "voice": name})
    return _bound(VoiceSpec(name, config.engine, params), long_text, params)


def openai_voice_for(name: str, spec: VoiceSpec, engine_voices: list[str]) -> str:
    """The engine's voice that one of OpenAI's names gets, on an engine with named voices.

    Kokoro's names say the gender in their second letter (``af_heart``, ``jm_kumo``): each
    OpenAI name takes a voice of its gender (``OPENAI_VOICES``), English ones (``a``, ``b``)
    first, then the others by name, in turn, OpenAI's names in alphabetical order; where the
    engine has no voice of that gender, any voice in turn. On the bundled five Japanese voices:
    alloy jf_alpha, coral jf_gongitsune, fable jf_nezumi, marin jf_tebukuro, nova jf_alpha...,
    and the six male names jm_kumo.
    """
    gender = str(spec.params.get("gender", ""))[:1]
    same = [v for v in engine_voices if len(v) > 2 and v[1] == gender and v[2] == "_"]
    choices = sorted(same or engine_voices, key=lambda v: (v[0] not in "ab", v))
    names = sorted(n for n, p in OPENAI_VOICES.items() if str(p.get("gender", ""))[:1] == gender)
    return choices[names.index(name) % len(choices)] if name in names else choices[0]


def _fallback_reporter(metrics: Metrics, engine: str) -> Callable[[str], None]:
    kind = engine_kind(engine)

    def report(language: str) -> None:
        metrics.fallback_segments.labels(language, kind).inc()
        log.info("a segment in %s was read by its fallback voice (the %s voice spells it)",
                 LANGUAGE_NAMES[language], kind)  # fmt: skip

    return report


def describe_voices(voices: dict[str, Voice]) -> None:
    """Set each voice's description: the voices file's, or for one of OpenAI's names what it
    is on its engine; and, for voices with the same identity (the same engine and parameters,
    so the same audio, byte for byte, from the same cached segments and stored responses),
    which names those are. On a one-speaker Piper voice, which takes no ``gender`` or ``pitch``,
    that is all 13 of OpenAI's names."""
    alike: dict[str, list[str]] = {}
    for name, voice in sorted(voices.items()):
        alike.setdefault(voice.identity, []).append(name)
    for name, voice in voices.items():
        spec = voice.spec
        text = spec.description
        if spec.openai and "voice" in voice.params and "voice" not in spec.params:
            text = f"OpenAI's name: {voice.engine}'s voice {voice.params['voice']}"
        elif spec.openai:
            ignored = sorted(set(spec.params) - set(voice.params) - {"speed"})
            if ignored:
                text = f"OpenAI's name; its engine ({voice.engine}) takes no {' or '.join(ignored)}"
            else:
                level = str(spec.params.get("pitch", "")).replace("_", " ")
                text = f"OpenAI's name: {spec.params.get('gender')}, {level} pitch"
        same = alike[voice.identity]
        if len(same) > 1:
            text += (
                f"{'. ' if text else ''}The same audio as {len(same) - 1} other voice(s) here "
                f"({', '.join(n for n in same if n != name)}), sharing their stored responses: "
                "a voices file can give each name its own voice, speaker or parameters"
            )
        voice.description = text


def listed_voice(name: str, voice: Voice) -> dict[str, Any]:
    """A voice as ``GET /v1/audio/voices`` lists it: the ``openai`` SDK's ``Voice`` fields where
    they apply (``id``, ``name``, ``object``, ``created_at``; ``type`` ``audio_sample`` for a voice
    cloned from a recording), then this server's (``engine``, ``description``, ``openai``)."""
    listed: dict[str, Any] = {
        "id": name,
        "object": "audio.voice",
        "name": name,
        "created_at": 0,
    }
    if voice.params.get("prompt_speech_path"):
        listed["type"] = "audio_sample"
    listed |= {"engine": voice.engine, "description": voice.description,
               "openai": voice.spec.openai}  # fmt: skip
    return listed


def _long_text(
    config: ServerConfig, model: Any, metrics: Metrics, segment_budget: int | None
) -> LongTextTTS:
    local = TTSCache(config.cache_dir, sample_rate=model.sample_rate, max_size_bytes=segment_budget)
    if config.redis:
        # redis:// or redis+cluster://; the lock shares the cache's breaker: one timeout stops both.
        breaker = CircuitBreaker(on_transition=metrics.breaker_transition)  # on /metrics
        shared = RedisCache(config.redis, sample_rate=model.sample_rate, breaker=breaker)
        lock = RedisSynthesisLock(config.redis, breaker=shared.breaker)
        return LongTextTTS(model, cache=TieredCache(local, shared), cross_process_lock=lock)
    return LongTextTTS(model, cache=local, cross_process_lock=True)
