"""``POST /v1/audio/speech``: the request, checked whole, and the response, streamed or stored.

A request is checked completely before the response starts (body size, JSON shape, model, input,
voice, format, speed, stream format), and so is its first segment: an engine that fails on it is a
500 in OpenAI's error shape, not a 200 with an empty body. After that, each segment is encoded and
sent as soon as ``LongTextTTS.stream`` yields it; a failure later can only cut the stream short
(the chunked body then ends without its terminating chunk, which clients report as an error), and
such a response is never kept. FLAC is the exception: it is made whole, then sent with its exact
header (see :class:`SpeechStream`).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
import xxhash
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from sparktts_cache import (
    NORMALIZER_VERSION,
    BlobWriter,
    CacheError,
    InvalidParamsError,
    Plan,
    StoredBlob,
)

from .audio_formats import FORMATS, StreamEncoder
from .errors import APIError, error_body, invalid
from .state import ServerState
from .voices import Voice

__all__ = ["SpeechRequest", "parse_speech_request", "speech"]

log = logging.getLogger("sparktts_cache.server")

SPEED_RANGE = (0.25, 4.0)
STREAM_FORMATS = ("audio", "sse")
#: Bumped when what a stored response holds for the same request changes (the encoders' settings;
#: 2: FLAC and WAV stored with their exact lengths).
RESPONSE_KEY_VERSION = 3
#: Base64 of at most this many bytes per SSE event when a stored response is replayed.
SSE_CHUNK_BYTES = 48 << 10
#: A response made whole before it is sent (FLAC) is held in memory up to this size, and beyond
#: it in an unnamed temporary file (``$TMPDIR``): memory per request stays bounded.
SPOOL_MEMORY_BYTES = 1 << 20
#: Such a response is sent in pieces of this size: a client that reads slowly holds one.
WHOLE_PIECE_BYTES = 64 << 10


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    input: str
    voice: str
    response_format: str
    speed: float
    stream_format: str
    instructions: str | None
    #: The extension field ``normalize`` (default: the server's ``--normalize``): speech-ready text.
    normalize: bool = True


def parse_speech_request(body: bytes, state: ServerState) -> SpeechRequest:
    """Check every field of a speech request (see docs/server.md's table); raise a 400 APIError.

    Nothing a body holds makes this fail otherwise: JSON nested past the parser's recursion
    limit (``[`` 50,000 times) and numbers of hundreds of digits are 400s like any bad value.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise invalid("the body must be a JSON object", None, "invalid_json") from None
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object", None, "invalid_json")
    model = _string(data, "model", required=True)
    if not state.config.accepts_model(model):
        raise invalid(
            f"model must be one of {', '.join(state.config.model_names())} "
            "(or a dated gpt-4o-mini-tts-YYYY-MM-DD)",
            "model",
            "model_not_found",
        )
    text = _string(data, "input", required=True)
    if not text.strip():
        raise invalid("input must not be blank", "input")
    limit = state.config.max_input_chars
    if len(text) > limit:
        raise invalid(
            f"input is {len(text)} characters long; this server takes at most {limit}",
            "input",
            "string_above_max_length",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid("input must be valid Unicode (it holds a lone surrogate)", "input") from None
    voice = _voice_name(data.get("voice"))
    try:
        bound = state.voice(voice)
    except InvalidParamsError as exc:
        raise invalid(str(exc), "voice", "voice_not_found") from None
    if bound is None:
        raise invalid(
            "voice is not one of this server's voices (GET /v1/audio/voices lists them)",
            "voice",
            "voice_not_found",
        )
    response_format = _string(data, "response_format") or "mp3"
    if response_format not in FORMATS:
        raise invalid(f"response_format must be one of {', '.join(FORMATS)}", "response_format")
    speed = data.get("speed", 1.0)
    if speed is None:
        speed = 1.0
    low, high = SPEED_RANGE
    if isinstance(speed, bool) or not isinstance(speed, (int, float)):
        raise invalid("speed must be a number", "speed")
    # An int is compared as it is: float() of one of 400 digits would overflow.
    if (isinstance(speed, float) and not math.isfinite(speed)) or not low <= speed <= high:
        raise invalid(f"speed must be from {low} to {high}", "speed")
    stream_format = _string(data, "stream_format") or "audio"
    if stream_format not in STREAM_FORMATS:
        raise invalid(f"stream_format must be one of {', '.join(STREAM_FORMATS)}", "stream_format")
    instructions = _string(data, "instructions")
    normalize = data.get("normalize")
    if normalize is None:
        normalize = state.config.normalize
    if not isinstance(normalize, bool):
        raise invalid("normalize must be true or false", "normalize", "invalid_type")
    return SpeechRequest(
        model, text, voice, response_format, float(speed), stream_format, instructions, normalize
    )


def _voice_name(value: object) -> str:
    """``voice``: a name, or the SDK's object form ``{"id": name}``; trimmed (SillyTavern sends
    its comma-separated list's items with their spaces: ``" echo"``)."""
    if isinstance(value, dict):
        value = value.get("id")
        if not isinstance(value, str):
            raise invalid('voice must be a name or {"id": name}', "voice", "invalid_type")
    return _string({"voice": value}, "voice", required=True).strip()


def _string(data: dict[str, Any], name: str, required: bool = False) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise invalid(f"{name} is required", name, "missing_required_parameter")
        return ""
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string", name, "invalid_type")
    return value


def response_key(request: SpeechRequest, voice: Voice) -> str:
    """The stored response's key: everything that shapes its bytes. ``instructions`` does not,
    and neither does the model name (every accepted name runs the same engine: tts-1, tts-1-hd
    and each dated gpt-4o-mini-tts share one stored response). A normalised input's key holds
    the normaliser's version (an input read as given keeps the key it always had)."""
    parts: list[object] = [
        RESPONSE_KEY_VERSION, request.input, voice.identity, request.response_format,
        request.speed,
    ]  # fmt: skip
    if request.normalize:
        parts.append({"normalizer": NORMALIZER_VERSION})
    return xxhash.xxh3_128_hexdigest(json.dumps(parts, ensure_ascii=False).encode("utf-8"))


@dataclass(frozen=True)
class CacheDirectives:
    """What the request's ``Cache-Control`` (or ``Pragma``) asks of the response store."""

    read: bool = True
    write: bool = True


def cache_directives(request: Request) -> CacheDirectives:
    """``no-cache``: make the response again (from the segment cache) and keep the new one;
    ``no-store``: neither serve nor keep a stored response. Segments are always cached."""
    values = request.headers.getlist("cache-control") + request.headers.getlist("pragma")
    directives = {d.strip().lower().partition("=")[0] for v in values for d in v.split(",")}
    if "no-store" in directives:
        return CacheDirectives(read=False, write=False)
    if "no-cache" in directives:
        return CacheDirectives(read=False, write=True)
    return CacheDirectives()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (never read further)."""
    declared = request.headers.get("content-length")
    too_large = APIError(413, f"the request body is larger than {limit} bytes", code="too_large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_delta(audio: bytes) -> bytes:
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode()})


def sse_done(request: SpeechRequest) -> bytes:
    """The final event. This server has no tokenizer: ``input_tokens`` counts characters."""
    characters = len(request.input)
    usage = {"input_tokens": characters, "output_tokens": 0, "total_tokens": characters}
    return sse_event({"type": "speech.audio.done", "usage": usage})


def content_type(request: SpeechRequest) -> str:
    if request.stream_format == "sse":
        return "text/event-stream"
    return FORMATS[request.response_format].content_type


def require_json(request: Request) -> None:
    """Refuse (415) a body not sent as ``application/json`` (parameters such as ``charset``
    allowed). A web page elsewhere can make a browser POST ``text/plain`` (or a form) here
    without asking first; ``application/json`` needs a CORS preflight, which this server
    answers only for ``--cors-origins``. So a page cannot spend a user's synthesis unasked."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise APIError(
            415,
            "the body must be JSON, sent with Content-Type: application/json",
            code="unsupported_media_type",
        )


async def speech(request: Request) -> Response:
    state: ServerState = request.app.state.server
    require_json(request)
    body = await read_body(request, state.config.max_body_bytes)
    speech_request = parse_speech_request(body, state)
    voice = state.voice(speech_request.voice)
    assert voice is not None  # checked by parse_speech_request
    key = response_key(speech_request, voice)
    directives = cache_directives(request)
    if directives.read:
        stored = await anyio.to_thread.run_sync(
            state.responses.open_blob, key, speech_request.response_format
        )
        if stored is not None:
            state.metrics.cache_hits.labels("response").inc()
            return _stored_response(speech_request, stored)
    state.metrics.cache_misses.labels("response").inc()
    # The request's one plan: its segments and which are cached, for the headers and the metrics,
    # and then what runs.
    plan = await voice.long_text.plan(
        speech_request.input, voice.params, normalize=speech_request.normalize
    )
    if not plan.segments:
        raise invalid("input has nothing to speak", "input")
    try:  # the text as it will be read: a URL with Han in it is said as its domain
        voice.check_text("\n".join(plan.segments))
    except InvalidParamsError as exc:
        raise invalid(str(exc), "input", "unsupported_language") from None
    return SpeechStream(state, speech_request, voice, plan, key, directives.write)


def _stored_response(speech_request: SpeechRequest, stored: StoredBlob) -> Response:
    """A stored response: small ones at once, larger ones read from their file in pieces as the
    client takes them (memory per client is bounded, as a static file server's)."""
    # If-None-Match is not a question a POST can ask here. RFC 9110 section 13.1.2 evaluates
    # it against the target resource's selected representation, and answers 304 only to GET
    # and HEAD (412 to other methods, when it matches). POST /v1/audio/speech has no
    # representation (GET is 405): the condition is always true and the request is
    # performed as if it were absent. The ETag (with --cache-headers) only names the stored
    # response's bytes (their checksum).
    headers = {"ETag": f'"{stored.digest}"', "X-Cache": "hit", "Cache-Control": "no-cache"}
    media_type = content_type(speech_request)
    if speech_request.stream_format == "sse":
        return StreamingResponse(_sse_replay(stored, speech_request), 200, headers, media_type)
    if stored.body is not None:
        return Response(stored.body, 200, headers, media_type)
    headers["Content-Length"] = str(stored.length)
    return StreamingResponse(stored.chunks(), 200, headers, media_type)


def _sse_replay(stored: StoredBlob, speech_request: SpeechRequest) -> Iterator[bytes]:
    for chunk in stored.chunks():
        for start in range(0, len(chunk), SSE_CHUNK_BYTES):
            yield sse_delta(chunk[start : start + SSE_CHUNK_BYTES])
    yield sse_done(speech_request)


class SpeechStream(Response):
    """A speech response made as it is sent, driven from one task (the ASGI call's).

    Everything runs in that task: ``LongTextTTS.stream`` is iterated there from its first
    segment to its last, while a child task only watches for the client's disconnect and then
    cancels it. So a client that goes away stops the synthesis of its later segments (the one
    in the engine then is finished and cached, and segments other requests wait for are made for
    them), and the response is not kept.

    The kept response is written as it is made and committed with its final header (FLAC's
    STREAMINFO, WAV's sizes: see :mod:`.audio_formats`), so every later client gets exact
    lengths; a streamed WAV went out with open sizes, which its readers accept. A FLAC with 0
    samples is refused by libsndfile, so FLAC (:attr:`AudioFormat.sent_whole`) is made whole
    first (spooled: :data:`SPOOL_MEMORY_BYTES`), then sent with its exact header and a
    ``Content-Length``, or as SSE events: the bytes later clients get from the stored copy.
    """

    def __init__(
        self,
        state: ServerState,
        request: SpeechRequest,
        voice: Voice,
        plan: Plan,
        key: str,
        keep: bool,
    ) -> None:
        super().__init__(status_code=200)
        self.state = state
        self.request = request
        self.voice = voice
        self.plan = plan
        self.key = key
        self.keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        async with anyio.create_task_group() as group:
            # Watched from the start: a client that leaves while it waits for a synthesis slot
            # leaves the queue.
            group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
            if await state.acquire_synthesis():
                try:
                    await self._respond(send)
                finally:
                    state.release_synthesis()
            else:
                await _send_busy(send, state.config.queue_timeout)
            group.cancel_scope.cancel()

    async def _respond(self, send: Send) -> None:
        long_text, plan, request = self.voice.long_text, self.plan, self.request
        cached, total = plan.cached_segments, len(plan.segments)
        self.state.metrics.cache_hits.labels("segment").inc(cached)
        self.state.metrics.cache_misses.labels("segment").inc(total - cached)
        encoder = StreamEncoder(request.response_format, long_text.model.sample_rate, request.speed)
        responses = self.state.responses
        writer = responses.begin_blob(self.key, request.response_format) if self.keep else None
        spool = (
            tempfile.SpooledTemporaryFile(SPOOL_MEMORY_BYTES)
            if FORMATS[request.response_format].sent_whole
            else None
        )
        chunks = long_text.stream(plan)
        started = completed = False
        try:
            first = await self._next(chunks, encoder, writer, spool)
            headers = {
                "content-type": content_type(request),
                "x-cache": "miss" if cached == 0 else "partial",
                "x-cache-segments": f"{cached}/{total}",
                "cache-control": "no-cache",
            }
            if request.stream_format == "sse":
                headers["x-accel-buffering"] = "no"
            if spool is not None:  # made whole before the first byte is sent
                while first is not None:
                    first = await self._next(chunks, encoder, writer, spool)
                size = await anyio.to_thread.run_sync(_finish_whole, encoder, writer, spool)
                if request.stream_format == "audio":
                    headers["content-length"] = str(size)
                await self._commit(encoder, writer)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
                }
            )
            started = True
            if spool is not None:
                await self._send_spool(send, spool)
            else:
                data = first
                while data is not None:
                    await self._send(send, data)
                    data = await self._next(chunks, encoder, writer, None)
                tail = await anyio.to_thread.run_sync(_finish, encoder, writer)
                await self._send(send, tail)
            if request.stream_format == "sse":
                await send({"type": "http.response.body", "body": sse_done(request),
                            "more_body": True})  # fmt: skip
            if spool is None:
                await self._commit(encoder, writer)
            completed = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception as exc:
            if not started:
                await _send_error(send, exc)
            elif request.stream_format == "sse":
                log.error("speech stream failed, ended with an error event: %s", _describe(exc))
                await _send_sse_error(send)
            else:
                log.error("speech stream cut short: %s", _describe(exc))
        finally:
            with anyio.CancelScope(shield=True):
                await chunks.aclose()
                if not completed:
                    await anyio.to_thread.run_sync(_abandon, encoder, writer)
                if spool is not None:
                    await anyio.to_thread.run_sync(spool.close)

    async def _next(
        self,
        chunks: AsyncIterator[npt.NDArray[np.float32]],
        encoder: StreamEncoder,
        writer: BlobWriter | None,
        spool: IO[bytes] | None,
    ) -> bytes | None:
        """The next segment, encoded (and written to the kept response, and to the spool of a
        response sent whole); None at the end."""
        try:
            audio = await chunks.__anext__()
        except StopAsyncIteration:
            return None
        return await anyio.to_thread.run_sync(_encode, encoder, writer, spool, audio)

    async def _commit(self, encoder: StreamEncoder, writer: BlobWriter | None) -> None:
        """Keep the whole response, with its final header, even if the client goes now."""
        if writer is not None:
            with anyio.CancelScope(shield=True):  # fails soft: never cuts the response
                await anyio.to_thread.run_sync(writer.commit, encoder.final_header)

    async def _send_spool(self, send: Send, spool: IO[bytes]) -> None:
        """Send a response made whole, from its start, in pieces (SSE: one event each)."""
        size = SSE_CHUNK_BYTES if self.request.stream_format == "sse" else WHOLE_PIECE_BYTES
        await anyio.to_thread.run_sync(spool.seek, 0)
        while piece := await anyio.to_thread.run_sync(spool.read, size):
            await self._send(send, piece)

    async def _send(self, send: Send, data: bytes) -> None:
        if not data:
            return
        if self.request.stream_format == "sse":
            data = sse_delta(data)
        await send({"type": "http.response.body", "body": data, "more_body": True})


def _encode(
    encoder: StreamEncoder,
    writer: BlobWriter | None,
    spool: IO[bytes] | None,
    audio: npt.NDArray[np.float32],
) -> bytes:
    data = encoder.encode(audio)
    if writer is not None:
        writer.write(data)
    if spool is not None:
        spool.write(data)
    return data


def _finish(encoder: StreamEncoder, writer: BlobWriter | None) -> bytes:
    data = encoder.finish()
    if writer is not None:
        writer.write(data)
    return data


def _finish_whole(encoder: StreamEncoder, writer: BlobWriter | None, spool: IO[bytes]) -> int:
    """Finish a response made whole: its last bytes and final header go into ``spool``; return
    its size."""
    spool.write(_finish(encoder, writer))
    size = spool.tell()
    spool.seek(0)
    spool.write(encoder.final_header)
    return size


def _abandon(encoder: StreamEncoder, writer: BlobWriter | None) -> None:
    encoder.close()
    if writer is not None:
        writer.discard()


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


def _describe(exc: BaseException) -> str:
    """An exception as the log says it: the library's messages, else only its type."""
    if isinstance(exc, CacheError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


async def _send_error(send: Send, exc: Exception) -> None:
    """Answer a failure before the response started: the library's own errors say what the
    engine refused; anything else is an internal error whose details stay in the log."""
    if isinstance(exc, APIError):
        await _send_json(send, exc.status, exc.body(), exc.headers)
        return
    log.error("speech failed before the response started", exc_info=exc)
    body = error_body("the engine failed to synthesise this input", "server_error", None,
                      "engine_error")  # fmt: skip
    await _send_json(send, 500, body, {})


async def _send_sse_error(send: Send) -> None:
    """End an SSE stream that failed after it started as OpenAI's streams do: an ``error``
    event (``{"type": "error", "error": {...}}``, which the SDK's stream reader raises as
    ``APIError``), then the body's proper end. The audio sent before it is incomplete."""
    body = error_body("the engine failed part way through; the audio sent is incomplete",
                      "server_error", None, "engine_error")  # fmt: skip
    await send({"type": "http.response.body", "body": sse_event({"type": "error", **body}),
                "more_body": True})  # fmt: skip
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_busy(send: Send, waited: float) -> None:
    """429: no synthesis slot came free within ``--queue-timeout``."""
    error = APIError(
        429,
        f"every synthesis slot stayed busy for {waited:g} s; try again shortly",
        code="rate_limit_exceeded",
        type="rate_limit_error",
        headers={"Retry-After": "1"},
    )
    await _send_json(send, error.status, error.body(), error.headers)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str]
) -> None:
    raw = json.dumps(body).encode()
    header_list = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    header_list += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw, "more_body": False})
