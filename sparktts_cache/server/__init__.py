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
import tempfile
from collections.abc import Callable
from typing import Any

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
        "parameters (see the README)",
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
        help="size limit of the cache directory, e.g. 2GB: segments get 3/4, finished "
        "responses 1/4, each evicting least recently used first (default: no limit)",
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
    """Run the server until interrupted (the ``serve`` command's handler)."""
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
    metrics_dir = None
    if config.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before any worker imports prometheus_client: each writes its values there.
        metrics_dir = tempfile.mkdtemp(prefix="sparktts-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[CONFIG_ENV] = config.to_env()
    import uvicorn

    from .app import create_app

    log_config = logging_config(config.log_level)
    if config.workers == 1:
        app: Any = create_app(config)  # a malformed voices file fails here, before binding
    else:
        create_app(config)  # checks the options and the voices file once, in this process
        app = "sparktts_cache.server.app:app_from_env"
    try:
        _run(uvicorn, app, config, log_config)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


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
