"""``sparktts-cache serve``: an OpenAI-compatible speech server with the cache inside.

Install with ``pip install "sparktts_cache[server]"``. This module only defines the command's
options and starts uvicorn; the app (:mod:`.app`) and its dependencies (Starlette, PyAV,
prometheus_client) are imported when the server starts, so the rest of the command line works
without them.

The server imports the library through its front door (``sparktts_cache``) and the public
``sparktts_cache.engines``; the library never imports the server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from sparktts_cache import CacheError, InvalidOptionError, MissingDependencyError

__all__ = ["add_arguments", "main"]

API_KEY_ENV = "SPARKTTS_API_KEY"


def add_arguments(parser: argparse.ArgumentParser, size: Callable[[str], int]) -> None:
    """Add ``serve``'s options to its subparser (the CLI's ``--cache-dir`` is global); ``size``
    parses ``--max-size`` as the CLI's other sizes are."""
    parser.add_argument(
        "--engine",
        default="espeak",
        help="the engine of OpenAI's voice names: espeak, piper, NAME:ARGUMENT (espeak:en-us, "
        "piper:<voice.onnx>) or a Spark-TTS model directory (default: espeak)",
    )
    parser.add_argument(
        "--voices",
        metavar="FILE",
        help="a TOML file of named voices: [voices.NAME] with engine = ... and the engine's "
        "parameters (see docs/server.md)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                        "127.0.0.1; 0.0.0.0 for every interface)")  # fmt: skip
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the cache directory; each segment is still synthesised "
        "once among them (file locks) (default: 1)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="a Redis behind the local cache, with the Redis synthesis lock, shared by servers "
        "on several machines (redis://host:6379/0)",
    )
    parser.add_argument(
        "--api-key",
        help=f"require Authorization: Bearer <key> on /v1/ routes (default: ${API_KEY_ENV}, "
        "else none)",
    )
    parser.add_argument(
        "--max-input-chars",
        type=int,
        default=4096,
        help="longest input accepted, in characters (default: 4096, as OpenAI); the request "
        "body may be at most 12 bytes a character plus 16 KiB",
    )
    parser.add_argument(
        "--max-size",
        type=size,
        help="size limit of the cache directory, e.g. 2GB: segments and finished responses "
        "alike, least recently used first, across processes (default: no limit)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=16,
        help="speech requests synthesising at once per process; more are answered 429 with "
        "Retry-After (stored responses are not counted) (default: 16)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="log level (access logs are JSON lines at info) (default: info)",
    )  # fmt: skip


def main(cache: Any, args: argparse.Namespace) -> int:
    """Run the server until interrupted (the ``serve`` command's handler).

    Everything that can stop it from starting is checked before it listens, each reported as one
    line on stderr with exit 2: the options, the voices file, the address (a port in use), the
    engines (an unknown one, a missing extra, a voice file that is not one). With one worker the
    engines loaded here are the server's; with more, each worker loads its own after this check.
    """
    try:
        started = _start(cache, args)
    except CacheError as exc:
        print(f"sparktts-cache serve: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    config, app, metrics_dir = started
    import uvicorn

    try:
        _run(uvicorn, app, config, logging_config(config.log_level))
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


#: ``serve``'s exit status when it cannot start: the CLI's "bad usage".
EXIT_CANNOT_START = 2


def _start(cache: Any, args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """Check everything and load the engines: the config, the app (or the factory's import path,
    for several workers) and the metrics directory made for the workers (or None)."""
    from .config import CONFIG_ENV, ServerConfig

    config = ServerConfig(
        cache_dir=str(cache.cache_dir),
        engine=args.engine,
        voices_file=args.voices,
        host=args.host,
        port=args.port,
        workers=args.workers,
        redis=args.redis,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        max_input_chars=args.max_input_chars,
        max_size=args.max_size,
        max_concurrent=args.max_concurrent,
        log_level=args.log_level,
    )
    config.check()
    _check_address(config.host, config.port)
    metrics_dir = None
    if config.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before any worker imports prometheus_client: each writes its values there.
        metrics_dir = tempfile.mkdtemp(prefix="sparktts-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[CONFIG_ENV] = config.to_env()
    try:
        try:
            from .app import create_app, load_engines
        except ImportError as exc:
            raise MissingDependencyError(
                f'the server needs its extra: pip install "sparktts_cache[server]" ({exc})'
            ) from None
        app: Any = create_app(config)  # a malformed voices file fails here
        load_engines(app)
    except BaseException:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    if config.workers > 1:
        app = "sparktts_cache.server.app:app_from_env"  # each worker makes and loads its own
    return config, app, metrics_dir


def _check_address(host: str, port: int) -> None:
    """Raise InvalidOptionError, naming the address, if the server could not listen there (a
    port in use, an address not of this machine).

    Bound as uvicorn binds (``SO_REUSEADDR``), then released for it.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror too
        reason = exc.strerror or str(exc)
        raise InvalidOptionError(f"cannot listen on {host}:{port}: {reason}") from None


def _run(uvicorn: Any, app: Any, config: Any, log_config: dict[str, Any]) -> None:
    uvicorn.run(
        app,
        factory=config.workers > 1,
        host=config.host,
        port=config.port,
        workers=config.workers if config.workers > 1 else None,
        access_log=False,
        log_config=log_config,
        timeout_graceful_shutdown=5,
    )


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, plus the server's loggers: messages on stderr, access logs as they are
    (JSON lines)."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"format": "%(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "sparktts_cache": {"handlers": ["stderr"], "level": level, "propagate": False},
            "sparktts_cache.server.access": {
                "handlers": ["access"],
                "level": level,
                "propagate": False,
            },
        },
    }
