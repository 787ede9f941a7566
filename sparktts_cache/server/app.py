"""The Starlette application: routes, authentication, access logs, metrics and errors.

Routes:
    ``POST /v1/audio/speech``  OpenAI's speech API (see :mod:`.speech`).
    ``GET /v1/audio/voices``   the voices clients may ask for.
    ``GET /v1/models``         the accepted model names, in OpenAI's list shape.
    ``GET /health``            200 once the engines are loaded.
    ``GET /metrics``           Prometheus' text format.
    ``GET /``                  a web page to try it (see :mod:`.page`).

With an API key, every ``/v1/`` route requires ``Authorization: Bearer <key>`` (compared in
constant time); ``/health`` and ``/metrics`` stay open for probes and scrapers (they tell nothing
about requests' contents), and so does the page at ``/`` (its requests send the key typed in).
Every response, errors included, is logged as one JSON line on the
``sparktts_cache.server.access`` logger.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sparktts_cache import SyncTTSCache

from .config import MODELS, ServerConfig, load_voices
from .errors import APIError, error_body
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .page import page_routes
from .speech import speech
from .state import ServerState
from .voices import load_voice_engines

__all__ = ["app_from_env", "create_app", "extra_routes", "load_engines"]

log = logging.getLogger("sparktts_cache.server")
access_log = logging.getLogger("sparktts_cache.server.access")

#: Routes another module adds (the web page at ``/``): appended to the app's routes.
extra_routes: list[BaseRoute] = [*page_routes]


def create_app(config: ServerConfig) -> Starlette:
    """The app for ``config``; its engines are loaded at startup (the ASGI lifespan).

    Raises:
        InvalidOptionError: for options out of range or a malformed voices file (before any
            engine is loaded).
    """
    config.check()
    state = ServerState(
        config=config,
        specs=load_voices(config),
        # Finished responses are blobs of the same store as the segments: one size limit (the
        # whole of --max-size), least recently used first, whichever they are.
        responses=SyncTTSCache(config.cache_dir, max_size_bytes=config.max_size),
        metrics=Metrics(),
        segment_budget=config.max_size,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not state.ready:  # ``serve`` with one worker loaded them before listening
            await anyio.to_thread.run_sync(load_engines, app)
        yield

    routes: list[BaseRoute] = [
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/audio/voices", voices, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *extra_routes,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            APIError: api_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
    )
    app.state.server = state
    app.add_middleware(ServerMiddleware, state=state)
    return app


def load_engines(app: Starlette) -> None:
    """Load the engines of ``app``'s voices and mark it ready (blocking: minutes for Spark-TTS).

    Raises:
        InvalidOptionError, MissingDependencyError, EngineError: see
            :func:`~.voices.load_voice_engines`.
    """
    state: ServerState = app.state.server
    state.voices = load_voice_engines(
        state.config, state.specs, state.metrics, state.segment_budget
    )
    state.ready = True
    log.info("engines loaded: %d voices", len(state.voices))


def app_from_env() -> Starlette:
    """The app of the options ``serve`` put in the environment (uvicorn's ``--factory``)."""
    return create_app(ServerConfig.from_env())


# -- routes -------------------------------------------------------------------------------------


async def voices(request: Request) -> Response:
    state: ServerState = request.app.state.server
    listed = [
        {
            "id": name,
            "name": name,
            "engine": voice.engine,
            "description": voice.spec.description,
            "openai": voice.spec.openai,
        }
        for name, voice in sorted(state.voices.items())
    ]
    return JSONResponse({"object": "list", "voices": listed, "data": listed})


async def models(request: Request) -> Response:
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "sparktts-cache"}
        for name in MODELS
    ]
    return JSONResponse({"object": "list", "data": data})


async def health(request: Request) -> Response:
    state: ServerState = request.app.state.server
    if not state.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ok", "voices": len(state.voices)})


async def metrics(request: Request) -> Response:
    state: ServerState = request.app.state.server
    body = await anyio.to_thread.run_sync(state.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# -- errors -------------------------------------------------------------------------------------


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    body = error_body(str(exc.detail), "invalid_request_error", None, code)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure: the traceback goes to the log, the client gets the shape only."""
    log.error("internal error on %s", request.url.path, exc_info=exc)
    body = error_body("internal server error", "server_error", None, "internal_error")
    return JSONResponse(body, status_code=500)


# -- middleware ---------------------------------------------------------------------------------


class ServerMiddleware:
    """Authentication, the access log, and the request metrics, around every HTTP request."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        key = state.config.api_key
        self.api_key = key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "bytes": 0, "x_cache": None}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"x-cache":
                        seen["x_cache"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        metrics = self.state.metrics
        metrics.in_progress.inc()
        try:
            if self._authorised(scope):
                await self.app(scope, receive, send_and_note)
            else:
                await self._unauthorised(send_and_note)
        finally:
            metrics.in_progress.dec()
            elapsed = time.perf_counter() - began
            route = _route_label(scope["path"])
            metrics.request_duration.labels(route, str(seen["status"])).observe(elapsed)
            client = scope.get("client")
            access_log.info(
                json.dumps(
                    {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": seen["status"],
                        "bytes": seen["bytes"],
                        "seconds": round(elapsed, 4),
                        "x_cache": seen["x_cache"],
                        "client": client[0] if client else None,
                    }
                )
            )

    def _authorised(self, scope: Scope) -> bool:
        if self.api_key is None or not scope["path"].startswith("/v1/"):
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(token.strip(), self.api_key)
        return False

    @staticmethod
    async def _unauthorised(send: Send) -> None:
        body = json.dumps(
            error_body(
                "a valid API key is required: Authorization: Bearer <key>",
                "invalid_request_error",
                None,
                "invalid_api_key",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


_ROUTES = ("/v1/audio/speech", "/v1/audio/voices", "/v1/models", "/health", "/metrics", "/")


def _route_label(path: str) -> str:
    """The path as a metric label: a known route, or ``other`` (labels must stay few)."""
    return path if path in _ROUTES else "other"
