"""Home Assistant's Wyoming protocol beside the HTTP API: ``serve --wyoming tcp://HOST:PORT``.

A Wyoming TTS service in the same process and event loop as the HTTP API, over the same
:class:`~.state.ServerState`: the same voices (so the same ``LongTextTTS`` objects, one cache and
one single-flight for both protocols), the same ``--max-input-chars`` and synthesis slots
(``--max-concurrent``, ``--queue-timeout``), the same metrics (``protocol="wyoming"``) and access
log (one JSON line per request).

Events (the ``wyoming`` package's classes, JSON lines over TCP with binary payloads):
    ``describe`` -> ``info``: one TTS program whose voices are ``/v1/audio/voices``'s names.
    ``synthesize`` -> ``audio-start``, ``audio-chunk``\\ s (16-bit mono PCM at the voice's rate,
        each segment sent as soon as it is ready), ``audio-stop``.
    ``synthesize-start``, ``synthesize-chunk``\\ s, ``synthesize-stop``: each sentence is
        synthesised as soon as the chunks complete it (a later sentence has begun), then the
        unfinished tail at ``synthesize-stop``; one ``audio-start`` ... ``audio-stop`` per
        sentence, then ``synthesize-stopped``.
    Bad input (blank text, an unknown voice, text over ``--max-input-chars``) and failures are
    ``error`` events; the connection goes on.

Wyoming has no authentication: the API key does not apply here. The address defaults to
loopback; anything else should be behind a firewall (see docs/wyoming.md).

Each connection reads its events in the handler's own task while one worker task of the
connection synthesises, in order: so chunks of a streamed text are read while earlier sentences
are spoken, and a client that disconnects (its reader sees the end) cancels the worker, which
stops the synthesis of later segments nobody else waits for (as :class:`~.speech.SpeechStream`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from sparktts_cache import CacheError, InvalidOptionError, InvalidParamsError, TextSegmenter
from sparktts_cache.engines import SCRIPT_LANGUAGES, NamedVoices

from .state import ServerState
from .voices import Voice

with warnings.catch_warnings():
    # wyoming.audio imports audioop, deprecated on Python 3.11 and 3.12 (on 3.13, where it is
    # gone, the package has its own): a server run with warnings as errors must still start.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.error import Error
    from wyoming.event import Event
    from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
    from wyoming.server import AsyncEventHandler, AsyncTcpServer
    from wyoming.tts import (
        Synthesize,
        SynthesizeChunk,
        SynthesizeStart,
        SynthesizeStop,
        SynthesizeStopped,
        SynthesizeVoice,
    )

__all__ = ["WyomingService", "parse_address", "voice_languages"]

log = logging.getLogger("sparktts_cache.server")
access_log = logging.getLogger("sparktts_cache.server.access")

#: Samples per ``audio-chunk`` (as wyoming-piper sends them).
SAMPLES_PER_CHUNK = 1024
SAMPLE_WIDTH = 2  # 16-bit
CHANNELS = 1
#: The address of a ``--wyoming`` that names none.
LOOPBACK = "127.0.0.1"


def parse_address(uri: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` as (host, port); with no host (``tcp://:10200``, or only the port,
    ``10200``), loopback: Wyoming has no authentication, so it is never exposed by default.

    Raises:
        InvalidOptionError: for anything else (Wyoming's ``unix://`` and ``stdio://`` are not
            served: the HTTP API shares the process).
    """
    text = uri.strip()
    if text.isdigit():
        text = f"tcp://:{text}"
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or port is None or parts.path or parts.query:
        raise InvalidOptionError(f"--wyoming must be tcp://HOST:PORT, not {uri!r}")
    return parts.hostname or LOOPBACK, port


def voice_languages(voice: Voice) -> list[str]:
    """The languages a voice speaks, as Wyoming lists them: its ``language`` or eSpeak ``voice``
    parameter, else its engine's argument (``espeak:en-us``), else English; then the languages
    of the scripts it reads besides (eSpeak's default voice, or a fallback voice: zh, ja, ko)."""
    languages = _own_languages(voice)
    # and those its fallback voices read (see sparktts_cache.engines.with_fallbacks)
    scripts: frozenset[str] = getattr(voice.long_text.model, "scripts", frozenset())
    for script, language in SCRIPT_LANGUAGES.items():
        if script in scripts and language not in languages:
            languages.append(language)
    return languages


def _own_languages(voice: Voice) -> list[str]:
    # On an engine with voices of its own (Kokoro), "voice" names one of them, not a language:
    # the language is chosen by the text's script, English for Latin.
    named = isinstance(voice.long_text.model, NamedVoices)
    for name in ("language",) if named else ("language", "voice"):
        value = voice.params.get(name)
        if isinstance(value, str) and value:
            return [value]
    kind, _, argument = voice.spec.engine.partition(":")
    if kind == "espeak" and argument:
        return [argument]
    return ["en"]


def _info(state: ServerState) -> Info:
    voices = [
        TtsVoice(
            name=name,
            description=voice.description or name,
            attribution=_ATTRIBUTION,
            installed=True,
            version=None,
            languages=voice_languages(voice),
        )
        for name, voice in sorted(state.voices.items())
    ]
    program = TtsProgram(
        name="sparktts-cache",
        description="sparktts-cache: cached text to speech, the same voices as its HTTP API",
        attribution=_ATTRIBUTION,
        installed=True,
        version=None,
        voices=voices,
        supports_synthesize_streaming=True,
    )
    return Info(tts=[program])


_ATTRIBUTION = Attribution(name="sparktts-cache", url="")  # the package names no home page


class BadRequest(Exception):
    """Input the server refuses: answered as an ``error`` event with ``code``."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.code = code


def pcm16(audio: npt.NDArray[np.float32]) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM."""
    clipped = np.clip(audio, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


@dataclass
class _Job:
    """One text to speak on a connection, in order: a whole ``synthesize``, or one sentence of
    a stream (``stopped`` on the stream's last)."""

    text: str
    voice: Voice | None
    event: str
    #: The moment the text was complete (the chunk that completed the sentence arrived).
    ready_at: float = field(default_factory=time.perf_counter)
    stopped: bool = False


class WyomingHandler(AsyncEventHandler):
    """One client connection (see the module's docstring)."""

    def __init__(
        self,
        state: ServerState,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(reader, writer)
        self.state = state
        peer = writer.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) and peer else None
        self.jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.segmenter = TextSegmenter()
        #: The streamed text not yet spoken, and its voice (None: not streaming).
        self.stream_text = ""
        self.stream_voice: Voice | None = None
        #: A stream whose voice was refused: its chunks are dropped until its stop.
        self.stream_refused = False
        #: Called once the connection ends (the service forgets it).
        self.on_close: Callable[[WyomingHandler], None] = lambda handler: None

    async def run(self) -> None:
        """Read events until the client leaves; a connection reset is its way of leaving (the
        base class would leave it as a task's unretrieved exception)."""
        try:
            await super().run()
        except ConnectionError:
            pass

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event(_info(self.state).event())
            elif Synthesize.is_type(event.type):
                if self.stream_voice is None:  # inside a stream it repeats the chunks' text
                    synthesize = Synthesize.from_event(event)
                    voice = self._voice(synthesize.voice)
                    self._check_text(synthesize.text)
                    self._queue(_Job(synthesize.text, voice, "synthesize"))
            elif SynthesizeStart.is_type(event.type):
                start = SynthesizeStart.from_event(event)
                self.stream_text, self.stream_refused = "", False
                try:
                    self.stream_voice = self._voice(start.voice)
                except BadRequest:
                    # One error for the stream; its chunks are dropped, its stop answered.
                    self.stream_refused = True
                    raise
            elif SynthesizeChunk.is_type(event.type):
                if not self.stream_refused:
                    self._stream_chunk(SynthesizeChunk.from_event(event).text)
            elif SynthesizeStop.is_type(event.type):
                if self.stream_refused:  # after the audio of what came before it
                    self.stream_refused = False
                    self._queue(_Job("", None, "synthesize-stream", stopped=True))
                else:
                    self._stream_stop()
        except BadRequest as exc:
            await self._error(str(exc), exc.code, event.type)
        return True

    def _voice(self, wanted: SynthesizeVoice | None) -> Voice:
        """The voice asked for: by name, else the first speaking its language, else the first
        voice (by name order, as ``describe`` lists them)."""
        voices = self.state.voices
        if wanted is not None and wanted.name:
            try:
                voice = self.state.voice(wanted.name.strip())
            except InvalidParamsError as exc:
                raise BadRequest(str(exc), "voice_not_found") from None
            if voice is None:
                raise BadRequest(
                    f"no voice {wanted.name!r} here (describe lists them)", "voice_not_found"
                )
            return voice
        names = sorted(voices)
        if wanted is not None and wanted.language:
            language = wanted.language.lower().replace("_", "-")
            for name in names:
                spoken = [lang.lower() for lang in voice_languages(voices[name])]
                if any(lang == language or language.startswith(lang + "-") for lang in spoken):
                    return voices[name]
            raise BadRequest(f"no voice speaks {wanted.language!r} here", "voice_not_found")
        if "alloy" in voices:  # OpenAI's first name: the HTTP API's usual voice
            return voices["alloy"]
        return voices[names[0]]

    def _check_text(self, text: str) -> None:
        if not text.strip():
            raise BadRequest("the text must not be blank", "blank_text")
        limit = self.state.config.max_input_chars
        if len(text) > limit:
            raise BadRequest(
                f"the text is {len(text)} characters long; this server takes at most {limit}",
                "text_too_long",
            )

    def _stream_chunk(self, text: str) -> None:
        voice = self.stream_voice
        if voice is None:
            raise BadRequest("synthesize-chunk outside synthesize-start/stop", "no_stream")
        pending = self.stream_text + text
        if len(pending) > self.state.config.max_input_chars:
            self.stream_text = ""  # the rest of this stream is dropped, the stop still answered
            self._check_text(pending)
        sentences = self.segmenter.split_sentences(pending)
        if len(sentences) < 2:  # the last sentence may go on in the next chunk
            self.stream_text = pending
            return
        *complete, tail = sentences
        # The tail keeps a trailing space the sentence splitter collapsed, so "Hi" + " there"
        # stays two words.
        self.stream_text = tail + (" " if pending[-1:].isspace() else "")
        self._queue(_Job(" ".join(complete), voice, "synthesize-stream"))

    def _stream_stop(self) -> None:
        voice = self.stream_voice
        if voice is None:
            raise BadRequest("synthesize-stop without synthesize-start", "no_stream")
        text, self.stream_text, self.stream_voice = self.stream_text, "", None
        self._queue(_Job(text, voice, "synthesize-stream", stopped=True))

    def _queue(self, job: _Job) -> None:
        if self.worker is None:
            self.worker = asyncio.create_task(self._work(), name="wyoming synthesis")
        self.jobs.put_nowait(job)

    async def _work(self) -> None:
        """Speak the connection's jobs in order (the only task that writes audio)."""
        while True:
            job = await self.jobs.get()
            if job is None:
                return
            if job.text.strip() and job.voice is not None:
                await self._speak(job, job.voice)
            if job.stopped:
                await self.write_event(SynthesizeStopped().event())

    async def _speak(self, job: _Job, voice: Voice) -> None:
        state = self.state
        metrics = state.metrics
        began = time.perf_counter()
        status, sent, x_cache, first_audio = "error", 0, None, None
        metrics.in_progress.labels("wyoming").inc()
        try:
            plan = await voice.long_text.plan(
                job.text, voice.params, normalize=state.config.normalize
            )
            if not plan.segments:
                raise BadRequest("the text has nothing to speak", "nothing_to_speak")
            try:  # the text as it will be read (normalised)
                voice.check_text("\n".join(plan.segments))
            except InvalidParamsError as exc:
                raise BadRequest(str(exc), "unsupported_language") from None
            cached, total = plan.cached_segments, len(plan.segments)
            x_cache = "hit" if cached == total else "miss" if cached == 0 else "partial"
            if not await state.acquire_synthesis():
                raise BadRequest(
                    f"every synthesis slot stayed busy for {state.config.queue_timeout:g} s; "
                    "try again shortly",
                    "busy",
                )
            try:
                metrics.cache_hits.labels("segment").inc(cached)
                metrics.cache_misses.labels("segment").inc(total - cached)
                rate = voice.long_text.model.sample_rate
                await self.write_event(AudioStart(rate, SAMPLE_WIDTH, CHANNELS).event())
                chunks = voice.long_text.stream(plan)
                try:
                    async for audio in chunks:
                        data = pcm16(audio)
                        for start in range(0, len(data), SAMPLES_PER_CHUNK * SAMPLE_WIDTH):
                            piece = data[start : start + SAMPLES_PER_CHUNK * SAMPLE_WIDTH]
                            await self.write_event(
                                AudioChunk(rate, SAMPLE_WIDTH, CHANNELS, piece).event()
                            )
                            sent += len(piece)
                            if first_audio is None:
                                first_audio = time.perf_counter() - job.ready_at
                finally:
                    await chunks.aclose()
                await self.write_event(AudioStop().event())
                status = "ok"
            finally:
                state.release_synthesis()
        except BadRequest as exc:
            await self._error(str(exc), exc.code, job.event)
        except (ConnectionError, asyncio.CancelledError):
            status = "disconnected"
            raise
        except Exception as exc:
            if isinstance(exc, CacheError):
                log.error("wyoming synthesis failed: %s: %s", type(exc).__name__, exc)
            else:
                log.error("wyoming synthesis failed", exc_info=exc)
            await self._error("the engine failed to synthesise this text", "engine_error",
                              job.event)  # fmt: skip
        finally:
            metrics.in_progress.labels("wyoming").dec()
            elapsed = time.perf_counter() - began
            metrics.request_duration.labels(job.event, status, "wyoming").observe(elapsed)
            line = {
                "protocol": "wyoming",
                "event": job.event,
                "status": status,
                "voice": voice.spec.name,
                "bytes": sent,
                "seconds": round(elapsed, 4),
                "first_audio_seconds": None if first_audio is None else round(first_audio, 4),
                "x_cache": x_cache,
                "client": self.client,
            }
            access_log.info(json.dumps(line))

    async def _error(self, text: str, code: str, event: str) -> None:
        """Answer refused input with an ``error`` event (and log it as the HTTP side logs a
        400); the connection goes on."""
        if event not in ("synthesize", "synthesize-stream"):
            line = {"protocol": "wyoming", "event": event, "status": "error", "code": code,
                    "client": self.client}  # fmt: skip
            access_log.info(json.dumps(line))
        try:
            await self.write_event(Error(text=text, code=code).event())
        except ConnectionError:
            pass

    async def disconnect(self) -> None:
        """The client is gone (or the server stops): stop its work (segments other requests
        wait for are still made for them by the single-flight)."""
        if self.worker is not None:
            self.worker.cancel()
            try:
                await self.worker
            except (asyncio.CancelledError, ConnectionError):
                pass
            except Exception as exc:  # already logged where it happened
                log.debug("wyoming worker ended: %r", exc)
        self.on_close(self)  # only now: the service's stop waits for its work to end


class WyomingService:
    """The Wyoming TCP server of one app: started and stopped with its lifespan."""

    def __init__(self, state: ServerState, uri: str) -> None:
        self.state = state
        self.host, self.port = parse_address(uri)
        self.server = AsyncTcpServer(self.host, self.port)
        self.handlers: set[WyomingHandler] = set()

    def _handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        handler = WyomingHandler(self.state, reader, writer)
        self.handlers.add(handler)
        handler.on_close = self.handlers.discard
        return handler

    async def start(self) -> None:
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any] = self._handler
        await self.server.start(handler)
        log.info("wyoming: listening on tcp://%s:%d (no authentication)", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, close every connection and end its work (each logged as
        ``disconnected``), before the app's shutdown goes on."""
        await self.server.stop()
        await asyncio.gather(*(h.disconnect() for h in list(self.handlers)))
