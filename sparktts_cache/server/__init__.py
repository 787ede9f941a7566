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
import functools
import math
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sparktts_cache import CacheError, InvalidOptionError, MissingDependencyError

__all__ = ["add_arguments", "main"]

#: Every option of ``serve`` may also be set as ``SPARKTTS_<OPTION>``: ``--max-size`` as
#: ``SPARKTTS_MAX_SIZE`` (the command line wins; an empty variable is unset).
ENV_PREFIX = "SPARKTTS_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class _Option:
    """One option of ``serve``: its flag, the field of ServerConfig it sets, its default, and how
    a value from the environment is read (as argparse reads it from the command line)."""

    flag: str
    field: str
    default: Any
    convert: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    boolean: bool = False

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()

    def from_env(self, raw: str) -> Any:
        """The value of the variable's text ``raw``, or InvalidOptionError naming the variable
        (argparse's words for the same mistake on the command line)."""
        if self.boolean:
            if raw.strip().lower() in _TRUE:
                return True
            if raw.strip().lower() in _FALSE:
                return False
            raise InvalidOptionError(f"{self.env}: not a boolean: {raw!r} (1 or 0, true or false)")
        if self.choices is not None and raw not in self.choices:
            raise InvalidOptionError(
                f"{self.env}: invalid choice: {raw!r} (choose from {', '.join(self.choices)})"
            )
        if self.convert is None:
            return raw
        try:
            return self.convert(raw)
        except argparse.ArgumentTypeError as exc:
            raise InvalidOptionError(f"{self.env}: {exc}") from None
        except (TypeError, ValueError):
            kind = getattr(self.convert, "__name__", "")
            raise InvalidOptionError(f"{self.env}: invalid {kind} value: {raw!r}") from None


def _names(text: str) -> list[str]:
    """A comma-separated list (``--models kokoro,my-tts``): its items, trimmed, empty ones out."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


_seconds.__name__ = "float"  # argparse's message: "invalid float value"


def add_arguments(parser: argparse.ArgumentParser, size: Callable[[str], int]) -> None:
    """Add ``serve``'s options to its subparser (the CLI's ``--cache-dir`` is global); ``size``
    parses ``--max-size`` as the CLI's other sizes are.

    An option not given on the command line is left out of the namespace (``SUPPRESS``):
    :func:`main` then takes it from ``SPARKTTS_<OPTION>``, else its default. The options are
    listed in the namespace as ``serve_options``.
    """
    options: list[_Option] = []

    def add(flag: str, default: Any, help: str, *, field: str = "", **kwargs: Any) -> None:
        option = _Option(
            flag,
            field or flag.removeprefix("--").replace("-", "_"),
            default,
            kwargs.get("type"),
            tuple(kwargs["choices"]) if "choices" in kwargs else None,
            kwargs.get("action") is argparse.BooleanOptionalAction,
        )
        options.append(option)
        help = f"{help} [{option.env}]"
        parser.add_argument(flag, default=argparse.SUPPRESS, help=help, **kwargs)

    add(
        "--engine",
        "espeak",
        "the engine of OpenAI's voice names: espeak, piper, NAME:ARGUMENT "
        "(espeak:en-us, piper:<voice.onnx>) or a Spark-TTS model directory (default: espeak)",
    )
    add(
        "--voices",
        None,
        "a TOML file of named voices: [voices.NAME] with engine = ... and the "
        "engine's parameters (see docs/server.md)",
        field="voices_file",
        metavar="FILE",
    )
    add(
        "--host",
        "127.0.0.1",
        "address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)",
    )
    add("--port", 8000, "port (default: 8000)", type=int)
    add(
        "--workers",
        1,
        "server processes sharing the cache directory; each segment is still "
        "synthesised once among them (file locks) (default: 1)",
        type=int,
    )
    add(
        "--redis",
        None,
        "a Redis behind the local cache, with the Redis synthesis lock, shared "
        "by servers on several machines: redis://host:6379/0 for one server, "
        "redis+cluster://host:port for a Redis Cluster (any node); a Redis that "
        "times out is skipped for 5 s (reads miss, writes skipped)",
        metavar="URL",
    )
    add("--api-key", None, "require Authorization: Bearer <key> on /v1/ routes (default: none)")
    add(
        "--max-input-chars",
        4096,
        "longest input accepted, in characters (default: 4096, as "
        "OpenAI); the request body may be at most 12 bytes a character plus 16 KiB",
        type=int,
    )
    add(
        "--max-size",
        None,
        "size limit of the cache directory, e.g. 2GB: segments and finished "
        "responses alike, least recently used first, across processes (default: no limit)",
        type=size,
    )
    add(
        "--max-concurrent",
        16,
        "speech requests synthesising at once per process; more wait "
        "their turn, first come first served, up to --queue-timeout (stored responses are not "
        "counted) (default: 16)",
        type=int,
    )
    add(
        "--queue-timeout",
        30.0,
        "seconds a speech request past --max-concurrent waits for its "
        "turn before it is answered 429 with Retry-After; 0 answers at once (default: 30)",
        type=_seconds,
        metavar="SECONDS",
    )
    add(
        "--models",
        [],
        "more names clients may send as model, comma-separated (kokoro,my-tts); "
        "OpenAI's and sparktts-cache are always accepted",
        type=_names,
        metavar="NAMES",
    )
    add(
        "--cors-origins",
        [],
        "web origins whose pages may call the API from a browser, "
        "comma-separated (https://app.example,http://localhost:3000), or * for any (default: "
        "none)",
        type=_names,
        metavar="ORIGINS",
    )
    add(
        "--allowed-hosts",
        None,
        "Host header names answered, comma-separated (tts.example.com,"
        "*.example.com), or * for any (default: bound to a loopback address, its loopback names "
        "only; otherwise any)",
        type=_names,
        metavar="HOSTS",
    )
    add(
        "--cache-headers",
        False,
        "send X-Cache, X-Cache-Segments and ETag: they tell any "
        "client what others have asked for (default: off)",
        action=argparse.BooleanOptionalAction,
    )
    add(
        "--normalize",
        True,
        "speak an input's Markdown as its words, URLs as their domain, without emoji "
        '(a request\'s "normalize": false reads its input as given; default: on)',
        action=argparse.BooleanOptionalAction,
    )
    add(
        "--header-timeout",
        10.0,
        "seconds a client has to send a request's headers (default: 10)",
        type=_seconds,
        metavar="SECONDS",
    )
    add(
        "--body-timeout",
        30.0,
        "seconds a client has to send a request's body once its headers are in (default: 30)",
        type=_seconds,
        metavar="SECONDS",
    )
    add(
        "--max-connections",
        None,
        "open connections per process; more are answered 503 and "
        "closed (default: 1000, or what ulimit -n leaves of its hard limit after 256 for the "
        "server's own files)",
        type=int,
    )
    add(
        "--wyoming",
        None,
        "also serve Home Assistant's Wyoming protocol (TTS) at tcp://HOST:PORT "
        "(a bare PORT: 127.0.0.1), "
        "on the same cache, voices and limits; it has no authentication (the API key does not "
        "apply): keep it on loopback or behind a firewall (tcp://127.0.0.1:10200) (default: off)",
        metavar="URI",
    )
    add(
        "--log-level",
        "info",
        "log level (access logs are JSON lines at info) (default: info)",
        choices=["debug", "info", "warning", "error"],
    )
    parser.set_defaults(serve_options=tuple(options))
    parser.epilog = (
        "Every option may also be set in the environment as SPARKTTS_<OPTION> (shown in "
        "brackets); the command line wins."
    )


def resolve_options(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``serve``'s option values as ServerConfig's fields, each from the command line, else its
    ``SPARKTTS_`` variable (if set and not empty), else its default; and the variables used, by
    field (for messages).

    Raises:
        InvalidOptionError: for a variable's value that is not one the option takes, naming the
            variable.
    """
    values: dict[str, Any] = {}
    from_environment: dict[str, str] = {}
    for option in args.serve_options:
        if hasattr(args, option.dest):
            values[option.field] = getattr(args, option.dest)
        elif environ.get(option.env, ""):
            values[option.field] = option.from_env(environ[option.env])
            from_environment[option.field] = option.env
        else:
            values[option.field] = option.default
    return values, from_environment


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

    values, from_environment = resolve_options(args, os.environ)
    config = ServerConfig(cache_dir=str(cache.cache_dir), option_names=from_environment, **values)
    config.check()
    _reserve_descriptors(config)
    _check_address(config.host, config.port)
    if config.wyoming is not None:
        _check_wyoming(config)
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


def _check_wyoming(config: Any) -> None:
    """Raise InvalidOptionError for a ``--wyoming`` that is not ``tcp://HOST:PORT``, one the
    server could not listen on, or one with several workers (they would all bind it)."""
    try:
        from .wyoming import parse_address
    except ImportError as exc:
        raise MissingDependencyError(
            f'--wyoming needs the server extra: pip install "sparktts_cache[server]" ({exc})'
        ) from None
    try:
        host, port = parse_address(config.wyoming)
    except InvalidOptionError as exc:  # named as it was set: SPARKTTS_WYOMING too
        raise InvalidOptionError(str(exc).replace("--wyoming", config.option("wyoming"))) from None
    if config.workers > 1:
        raise InvalidOptionError(
            f"{config.option('wyoming')} needs one worker ({config.option('workers')} "
            f"{config.workers}): each would listen on {config.wyoming}"
        )
    if port == config.port:
        raise InvalidOptionError(f"{config.option('wyoming')}: port {port} is the HTTP API's")
    _check_address(host, port)


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


def _reserve_descriptors(config: Any) -> None:
    """Raise this process's descriptor limit (``ulimit -n``, up to its hard limit) so that it holds
    ``--max-connections`` connections and :data:`~.config.RESERVED_DESCRIPTORS` more; the
    workers inherit it. With ``--max-connections`` unset, as near the default as the hard limit
    allows (:meth:`~.config.ServerConfig.connection_limit` then fits the rest).

    Raises:
        InvalidOptionError: if ``--max-connections`` cannot fit under the hard limit.
    """
    from .config import DEFAULT_MAX_CONNECTIONS, RESERVED_DESCRIPTORS

    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    wanted = (config.max_connections or DEFAULT_MAX_CONNECTIONS) + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if raised > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (ValueError, OSError):
            raised = soft
    if config.max_connections is not None and raised < wanted:
        raise InvalidOptionError(
            f"{config.option('max_connections')} {config.max_connections} needs {wanted} open "
            f"descriptors with the server's own; ulimit -n allows {max(raised, soft)}"
        )


def _run(uvicorn: Any, app: Any, config: Any, log_config: dict[str, Any]) -> None:
    from .connections import ConnectionLimits, GuardedH11Protocol

    limits = ConnectionLimits(
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        max_connections=config.connection_limit(),
    )
    uvicorn.run(
        app,
        factory=config.workers > 1,
        host=config.host,
        port=config.port,
        workers=config.workers if config.workers > 1 else None,
        # uvicorn's h11 protocol with the header and body timeouts and the connection limit
        # it lacks (see .connections); a partial of a module's class pickles for the workers.
        http=functools.partial(GuardedH11Protocol, limits=limits),
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
