"""The Starlette application: routes, authentication, access logs, metrics and errors.

Routes (each ``GET`` answers ``HEAD`` too):
    ``POST /v1/audio/speech``     OpenAI's speech API (see :mod:`.speech`).
    ``GET /v1/audio/voices``      the voices clients may ask for.
    ``GET /v1/audio/models``      the model names, as Open WebUI reads them (``{"models": [...]}``).
    ``GET /v1/models``            the model names, in OpenAI's list shape.
    ``GET /v1/models/{id}``       one of them, as the SDK's ``models.retrieve`` reads it.
    ``GET /health``               200 once the engines are loaded.
    ``GET /metrics``              Prometheus' text format.
    ``GET /``                     a web page to try it (see :mod:`.page`).

Around them, from the outside in: the access log and metrics (every response, errors included,
is one JSON line on the ``sparktts_cache.server.access`` logger; ``X-Cache``,
``X-Cache-Segments`` and ``ETag`` are removed here unless ``--cache-headers``), the ``Host``
check (``--allowed-hosts``, against DNS rebinding), CORS (``--cors-origins``; off by default),
and authentication: with an API key, every ``/v1/`` route requires ``Authorization: Bearer
<key>`` (compared in constant time); ``/health`` and ``/metrics`` stay open for probes and
scrapers (they tell nothing about requests' contents), and so does the page at ``/`` (its
requests send the key typed in).
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
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sparktts_cache import SyncTTSCache

from .config import ServerConfig, load_languages, load_voices, read_voices_file
from .connections import TIMED_OUT
from .errors import APIError, error_body
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .page import page_routes
from .speech import speech
from .state import ServerState
from .voices import listed_voice, load_voice_engines

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
    voices_file = read_voices_file(config)  # read once, for its voices and its languages
    state = ServerState(
        config=config,
        specs=load_voices(config, voices_file),
        languages=load_languages(config, voices_file),
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
        if config.wyoming is None:
            yield
            return
        # The Wyoming server shares this app's state: its voices, cache, slots and metrics.
        from .wyoming import WyomingService

        wyoming = WyomingService(state, config.wyoming)
        await wyoming.start()
        try:
            yield
        finally:
            await wyoming.stop()

    routes: list[BaseRoute] = [  # Starlette answers HEAD on each GET route
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/audio/voices", voices, methods=["GET"]),
        Route("/v1/audio/models", audio_models, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", model, methods=["GET"]),
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
            ClientDisconnect: client_gone,
            Exception: internal_error,
        },
    )
    app.state.server = state
    # The last added is the outermost.
    app.add_middleware(Authentication, api_key=config.api_key)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "HEAD", "POST"],
            allow_headers=["*"],  # the SDKs send their own (X-Stainless-*...)
            expose_headers=[*(CACHE_HEADERS if config.cache_headers else ()), "Retry-After"],
            allow_private_network=True,  # a listed public origin may call a server on localhost
        )
    hosts = config.trusted_hosts()
    if hosts is not None:
        app.add_middleware(HostCheck, allowed_hosts=hosts)
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
        state.config, state.specs, state.metrics, state.segment_budget, state.languages
    )
    state.ready = True
    log.info("engines loaded: %d voices", len(state.voices))


def app_from_env() -> Starlette:
    """The app of the options ``serve`` put in the environment (uvicorn's ``--factory``)."""
    return create_app(ServerConfig.from_env())


# -- routes -------------------------------------------------------------------------------------


async def voices(request: Request) -> Response:
    state: ServerState = request.app.state.server
    listed = [listed_voice(name, voice) for name, voice in sorted(state.voices.items())]
    return JSONResponse({"object": "list", "voices": listed, "data": listed})


def _model_object(name: str) -> dict[str, Any]:
    """A model as OpenAI's API shows one (the SDK's ``Model``)."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "sparktts-cache"}


async def models(request: Request) -> Response:
    state: ServerState = request.app.state.server
    data = [_model_object(name) for name in state.config.model_names()]
    return JSONResponse({"object": "list", "data": data})


async def audio_models(request: Request) -> Response:
    """Open WebUI's probe for its model list: it reads ``models``, a list of ``{"id": ...}``
    (``backend/open_webui/routers/audio.py``); ``data`` holds the same in OpenAI's list shape."""
    state: ServerState = request.app.state.server
    data = [_model_object(name) for name in state.config.model_names()]
    return JSONResponse({"object": "list", "models": data, "data": data})


async def model(request: Request) -> Response:
    """``GET /v1/models/{id}``: a name ``model`` takes (any dated ``gpt-4o-mini-tts`` too)."""
    state: ServerState = request.app.state.server
    name = request.path_params["model"]
    if not state.config.accepts_model(name):
        raise APIError(
            404,
            "no such model here (GET /v1/models lists them)",
            param="model",
            code="model_not_found",
        )
    return JSONResponse(_model_object(name))


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


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client closed its connection while sending its body: nobody reads the answer, and
    the access log's line (status 499, as nginx logs it) is all there is to say."""
    return Response(status_code=499)


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure: the traceback goes to the log, the client gets the shape only."""
    log.error("internal error on %s", request.url.path, exc_info=exc)
    body = error_body("internal server error", "server_error", None, "internal_error")
    return JSONResponse(body, status_code=500)


# -- middleware ---------------------------------------------------------------------------------


#: Headers that tell what the cache holds (``--cache-headers``; see docs/server.md).
CACHE_HEADERS = ("X-Cache", "X-Cache-Segments", "ETag")
_CACHE_HEADER_NAMES = {name.lower().encode() for name in CACHE_HEADERS}


class ServerMiddleware:
    """The access log and the request metrics around every HTTP request; it also removes the
    cache headers (:data:`CACHE_HEADERS`) unless ``--cache-headers`` (the log keeps
    ``x_cache``)."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.cache_headers = state.config.cache_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        # No response at all from an app that returned: its client left first (499, as nginx).
        seen: dict[str, Any] = {"status": 499, "bytes": 0, "x_cache": None}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = message.get("headers", [])
                for name, value in headers:
                    if name.lower() == b"x-cache":
                        seen["x_cache"] = value.decode("latin-1")
                if not self.cache_headers:
                    kept = [(n, v) for n, v in headers if n.lower() not in _CACHE_HEADER_NAMES]
                    if len(kept) != len(headers):
                        message = {**message, "headers": kept}
            elif message["type"] == "http.response.body" and scope["method"] != "HEAD":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        metrics = self.state.metrics
        metrics.in_progress.labels("http").inc()
        try:
            await self.app(scope, receive, send_and_note)
        except BaseException:
            if seen["status"] == 499:
                seen["status"] = 500
            raise
        finally:
            metrics.in_progress.labels("http").dec()
            elapsed = time.perf_counter() - began
            # A body that did not arrive in time was answered 408 by the connection itself.
            seen["status"] = scope.get(TIMED_OUT, seen["status"])
            route = _route_label(scope["path"])
            metrics.request_duration.labels(route, str(seen["status"]), "http").observe(elapsed)
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


class HostCheck:
    """Starlette's ``TrustedHostMiddleware`` deciding, this server answering: a ``Host`` it does
    not allow gets a 400 in OpenAI's error shape (not Starlette's plain text).

    A web page whose own name was made to resolve to this machine (DNS rebinding) sends that
    name as ``Host``; refusing names the server was not told keeps such a page from using it
    as if it were the page's own origin.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.decide = TrustedHostMiddleware(_allow, allowed_hosts=allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.decide(scope, receive, _discard)
        if scope.pop(_HOST_ALLOWED, False):
            await self.app(scope, receive, send)
            return
        body = error_body(
            "this server does not answer to this Host name (see its --allowed-hosts)",
            "invalid_request_error",
            None,
            "host_not_allowed",
        )
        await JSONResponse(body, status_code=400)(scope, receive, send)


_HOST_ALLOWED = "sparktts_cache.host_allowed"


async def _allow(scope: Scope, receive: Receive, send: Send) -> None:
    """The application TrustedHostMiddleware calls when the host is allowed: it notes that."""
    scope[_HOST_ALLOWED] = True


async def _discard(message: Message) -> None:
    """Where TrustedHostMiddleware's own refusal goes (HostCheck answers instead)."""


class Authentication:
    """With an API key, ``Authorization: Bearer <key>`` on every ``/v1/`` route (compared with
    ``hmac.compare_digest``), else 401 in OpenAI's shape with ``WWW-Authenticate: Bearer``."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorised(scope):
            await self.app(scope, receive, send)
        else:
            await self._unauthorised(send)

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


_ROUTES = (
    "/v1/audio/speech", "/v1/audio/voices", "/v1/audio/models", "/v1/models", "/health",
    "/metrics", "/",
)  # fmt: skip


def _route_label(path: str) -> str:
    """The path as a metric label: a known route, or ``other`` (labels must stay few)."""
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return path if path in _ROUTES else "other"
