"""A small asyncio TTS server: ``POST /tts`` streams a WAV of a long text as segments are ready.

Run it (after ``pip install "sparktts_cache[espeak,server]"``)::

    uvicorn --factory examples.server:app_from_env --port 8000
    curl -X POST localhost:8000/tts -d '{"text": "Hello there. How are you?"}' -o out.wav

Environment: ``SPARKTTS_ENGINE`` (``espeak`` or a Spark-TTS model directory),
``SPARKTTS_CACHE_DIR`` (the local cache), and ``SPARKTTS_REDIS_URL`` (optional: a Redis shared by
every server, behind the local cache, with a Redis synthesis lock so that each segment is
synthesised once across machines).

Endpoints:
    ``POST /tts`` with JSON ``{"text": "...", "params": {"gender": "female", ...}}``: a streamed
        WAV (32-bit float, mono, at the model's rate) whose sizes are left open (0xFFFFFFFF), as
        is usual for streamed WAV; every segment is sent as soon as it is ready.
    ``GET /cache/stats``: this server's hits, misses, writes and syntheses.
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sparktts_cache import (
    CacheError,
    LongTextTTS,
    RedisCache,
    RedisSynthesisLock,
    TieredCache,
    TTSCache,
    load_tts_model,
)

MAX_TEXT = 200_000


def wav_header(sample_rate: int) -> bytes:
    """The header of a streamed float32 mono WAV whose length is not known in advance."""
    open_size = 0xFFFFFFFF
    return b"".join(
        [
            struct.pack("<4sI4s", b"RIFF", open_size, b"WAVE"),
            struct.pack("<4sIHHIIHHH", b"fmt ", 18, 3, 1, sample_rate, sample_rate * 4, 4, 32, 0),
            struct.pack("<4sI", b"data", open_size),
        ]
    )


def create_app(long_text: LongTextTTS) -> Starlette:
    """The ASGI app around one :class:`LongTextTTS` (shared by every request)."""

    async def tts(request: Request) -> Response:
        try:
            body = await request.json()
            text, params = body["text"], body.get("params") or {}
            if not isinstance(text, str) or not isinstance(params, dict):
                raise TypeError("text must be a string and params an object")
            if len(text) > MAX_TEXT:
                raise ValueError(f"text is longer than {MAX_TEXT} characters")
            long_text.key_params(params)
            long_text.cache.generate_cache_key("probe", long_text.key_params(params))
        except (ValueError, TypeError, KeyError, CacheError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)

        async def body_chunks() -> AsyncIterator[bytes]:
            yield wav_header(long_text.model.sample_rate)
            async for chunk in long_text.stream(text, params):
                yield chunk.astype("<f4").tobytes()

        return StreamingResponse(body_chunks(), media_type="audio/wav")

    async def stats(request: Request) -> Response:
        data: dict[str, Any] = {"syntheses": long_text.synthesis_count}
        traffic = getattr(long_text.cache, "traffic", None)
        if traffic is None and isinstance(long_text.cache, TieredCache):
            traffic = getattr(long_text.cache.local, "traffic", None)
        if traffic is not None:
            data.update(hits=traffic.hits, misses=traffic.misses, writes=traffic.writes)
        return JSONResponse(data)

    return Starlette(
        routes=[
            Route("/tts", tts, methods=["POST"]),
            Route("/cache/stats", stats, methods=["GET"]),
        ]
    )


def app_from_env() -> Starlette:
    """The app as configured by the environment (see the module docstring)."""
    model = load_tts_model(os.environ.get("SPARKTTS_ENGINE", "espeak"))
    local = TTSCache(sample_rate=model.sample_rate)
    redis_url = os.environ.get("SPARKTTS_REDIS_URL")
    if redis_url:
        cache = TieredCache(local, RedisCache(redis_url, sample_rate=model.sample_rate))
        long_text = LongTextTTS(
            model, cache=cache, cross_process_lock=RedisSynthesisLock(redis_url)
        )
    else:
        long_text = LongTextTTS(model, cache=local, cross_process_lock=True)
    return create_app(long_text)
