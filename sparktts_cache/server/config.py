"""The server's options, and its voices: OpenAI's names plus those of a TOML file.

A voice is a name a client may send, bound on the server to an engine and fixed parameters. A
network client chooses only among these names: it never names a path, an engine or a parameter.

The voices file (``--voices FILE``)::

    [voices.narrator]                 # a name clients send as "voice"
    engine = "espeak:en-us"           # anything --engine takes (default: the server's --engine)
    gender = "male"                   # every other key is a parameter of the engine
    pitch = "low"

    [voices.joe]
    engine = "piper"                  # or "piper:/voices/en_US-lessac-medium.onnx"
    noise_scale = 0.5

    [voices.me]
    engine = "/models/Spark-TTS-0.5B"
    engine_options = { device = "cuda:0" }
    prompt_speech_path = "/voices/me.wav"
    prompt_text = "The words spoken in me.wav."

    [languages]      # who reads the sentences in a script a voice's engine spells letter by letter
    zh = "piper:/voices/zh_CN-huayan-medium.onnx"   # any engine (default: espeak:cmn, ja, ko)
    ko = ""                                         # none: a text in Hangul is refused (400)

A voice may reuse one of OpenAI's names to replace its default. Parameters are checked when the
server starts: one the engine does not take stops the server with a message naming the voice.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from sparktts_cache import InvalidOptionError, read_regular_file
from sparktts_cache.engines import LANGUAGE_NAMES

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_MAX_INPUT_CHARS",
    "FIXED_SPEED",
    "MODELS",
    "OPENAI_VOICES",
    "SERVER_MODEL",
    "ServerConfig",
    "VoiceSpec",
    "load_languages",
    "load_voices",
    "read_voices_file",
]

#: The environment variable through which ``serve`` hands its options to uvicorn's worker
#: processes (JSON of :class:`ServerConfig`).
CONFIG_ENV = "SPARKTTS_SERVER_CONFIG"
#: OpenAI's own limit on ``input``.
DEFAULT_MAX_INPUT_CHARS = 4096
#: The largest voices file read: thousands of voices (``/dev/zero`` is refused, not read forever).
MAX_VOICES_FILE_BYTES = 1 << 20
#: This server's own model name.
SERVER_MODEL = "sparktts-cache"
#: The model names accepted as ``model`` and listed by ``/v1/models``: every name of the
#: ``openai`` SDK's ``SpeechModel`` (all meaning the configured engines: what engine speaks is the
#: voice's business) and this server's own; ``--models`` adds more. Any other dated
#: ``gpt-4o-mini-tts-YYYY-MM-DD`` is accepted too (see :meth:`ServerConfig.accepts_model`).
MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15", SERVER_MODEL)
#: OpenAI's snapshots of its speech model: the name, a dash and the snapshot's date.
_DATED_MODEL = re.compile(r"gpt-4o-mini-tts-(\d{4}-\d{2}-\d{2})")
#: A name ``--models`` may add: what clients send as ``model`` and put in ``/v1/models/{id}``.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
#: What ``--cors-origins`` takes: ``*``, or an origin as browsers send it (no path).
_ORIGIN = re.compile(
    r"\*|https?://[A-Za-z0-9.-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?"
)
#: What ``--allowed-hosts`` takes: ``*``, ``*.domain`` or a host name or address (no port).
_HOST_PATTERN = re.compile(r"\*|(\*\.)?[A-Za-z0-9_.-]+|\[?[0-9A-Fa-f:.]+\]?")
#: The host names a server bound to a loopback address answers by default (DNS rebinding: a
#: web page's own name, pointed at 127.0.0.1, is refused).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
#: Descriptors kept for everything but client connections (the cache's files, the engines, the
#: worker threads' transient opens) when ``--max-connections`` is derived from ``ulimit -n``.
RESERVED_DESCRIPTORS = 256
#: ``--max-connections``'s default when the descriptor limit allows it.
DEFAULT_MAX_CONNECTIONS = 1000

#: OpenAI's voice names and the fixed parameters they get on the default engine (Spark-TTS's
#: control levels, which eSpeak and Spark-TTS take; an engine gets the subset it accepts, so on a
#: one-speaker Piper voice they all sound alike and share their cache entries).
OPENAI_VOICES: dict[str, dict[str, str]] = {
    "alloy": {"gender": "female", "pitch": "moderate"},
    "ash": {"gender": "male", "pitch": "low"},
    "ballad": {"gender": "male", "pitch": "high"},
    "cedar": {"gender": "male", "pitch": "moderate"},
    "coral": {"gender": "female", "pitch": "high"},
    "echo": {"gender": "male", "pitch": "moderate"},
    "fable": {"gender": "female", "pitch": "low"},
    "marin": {"gender": "female", "pitch": "moderate"},
    "nova": {"gender": "female", "pitch": "very_high"},
    "onyx": {"gender": "male", "pitch": "very_low"},
    "sage": {"gender": "female", "pitch": "low"},
    "shimmer": {"gender": "female", "pitch": "very_high"},
    "verse": {"gender": "male", "pitch": "very_high"},
}
#: The speed every named voice is synthesised at (the request's ``speed`` is applied after the
#: cache); Spark-TTS needs all three control parameters once ``gender`` is set.
FIXED_SPEED = {"speed": "moderate"}

_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RESERVED_KEYS = {"engine", "engine_options", "description"}


@dataclass(frozen=True)
class VoiceSpec:
    """One voice: the engine spec (as ``--engine`` takes it), its options and fixed parameters.

    ``openai`` marks one of OpenAI's names on the default engine, whose parameters are filtered
    to those the engine takes (a voices file's parameters must all be taken).
    """

    name: str
    engine: str
    params: dict[str, Any] = field(default_factory=dict)
    engine_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    openai: bool = False


@dataclass
class ServerConfig:
    """Everything ``sparktts-cache serve`` was told (see ``serve --help`` and docs/server.md).

    ``max_size`` is the cache directory's limit: segments and finished responses (blobs of the
    same store) share it, least recently used first. ``allowed_hosts`` None is the default of
    :meth:`trusted_hosts`; ``max_connections`` None is :meth:`connection_limit`'s.
    ``option_names`` says how the user named an option whose value came from elsewhere than its
    ``--option`` (``{"port": "SPARKTTS_PORT"}``), so that a message about it names what was set.
    """

    cache_dir: str
    engine: str = "espeak"
    voices_file: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis: str | None = None
    api_key: str | None = None
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS
    max_size: int | None = None
    max_concurrent: int = 16
    queue_timeout: float = 30.0
    models: list[str] = field(default_factory=list)
    cors_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] | None = None
    cache_headers: bool = False
    #: ``--no-normalize``: read inputs as given rather than as speech-ready text (Markdown's words).
    normalize: bool = True
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int | None = None
    log_level: str = "info"
    #: ``--wyoming tcp://HOST:PORT``: a Wyoming TTS server beside the HTTP API (server/wyoming.py).
    wyoming: str | None = None
    option_names: dict[str, str] = field(default_factory=dict)

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: room for the longest input even if every character is
        JSON-escaped as a surrogate pair (12 bytes), plus 16 KiB for the other fields."""
        return 16 * 1024 + 12 * self.max_input_chars

    def option(self, name: str) -> str:
        """How the user named option ``name`` (a field): ``--max-size`` or ``SPARKTTS_MAX_SIZE``."""
        flag = "--voices" if name == "voices_file" else "--" + name.replace("_", "-")
        return self.option_names.get(name) or flag

    def model_names(self) -> list[str]:
        """The names ``/v1/models`` lists: :data:`MODELS`, ``kokoro`` with ``--engine kokoro``
        (Kokoro-FastAPI's clients send it), then ``--models``'s."""
        engine_models = ["kokoro"] if self.engine.partition(":")[0] == "kokoro" else []
        return list(dict.fromkeys([*MODELS, *engine_models, *self.models]))

    def accepts_model(self, name: str) -> bool:
        """Whether ``model`` may be ``name``: a listed name, or a dated ``gpt-4o-mini-tts``."""
        if name in self.model_names():
            return True
        dated = _DATED_MODEL.fullmatch(name)
        if dated is None:
            return False
        try:
            datetime.date.fromisoformat(dated[1])
        except ValueError:
            return False
        return True

    def trusted_hosts(self) -> list[str] | None:
        """The ``Host`` names answered (Starlette's ``TrustedHostMiddleware`` patterns), or None
        for any: ``--allowed-hosts`` (``*``: any) and the loopback names; without it, bound to
        a loopback address, the loopback names (and the bound one) only; bound elsewhere, any
        (a server on the network is reached by names this one cannot guess: docs/server.md says
        to set them). Loopback names are always answered: they cannot be a web page's own name
        (DNS rebinding needs one), and local probes (``curl http://127.0.0.1:8000/health``) use
        them."""
        if self.allowed_hosts is not None:
            if "*" in self.allowed_hosts:
                return None
            return list(dict.fromkeys([*LOOPBACK_HOSTS, *self.allowed_hosts]))
        if _is_loopback(self.host):
            return list(dict.fromkeys([*LOOPBACK_HOSTS, self.host.lower()]))
        return None

    def connection_limit(self) -> int:
        """The open connections one process accepts: ``--max-connections``, else
        :data:`DEFAULT_MAX_CONNECTIONS` or fewer, to leave :data:`RESERVED_DESCRIPTORS` of the
        descriptor limit (``ulimit -n``, read now) for everything else."""
        if self.max_connections is not None:
            return self.max_connections
        available = _descriptor_limit() - RESERVED_DESCRIPTORS
        return max(1, min(DEFAULT_MAX_CONNECTIONS, available))

    def check(self) -> None:
        """Raise InvalidOptionError for an option out of its range, naming it as it was set."""
        counts = ("port", "workers", "max_input_chars", "max_concurrent")
        for name in (*counts, "max_connections"):
            value = getattr(self, name)
            if name == "max_connections" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidOptionError(f"{self.option(name)} must be an int >= 0")
        for name in ("workers", "max_input_chars", "max_concurrent", "max_connections"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidOptionError(f"{self.option(name)} must be at least 1")
        if self.port > 65535:
            raise InvalidOptionError(f"{self.option('port')} must be 0-65535, not {self.port}")
        for name in ("queue_timeout", "header_timeout", "body_timeout"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0:
                raise InvalidOptionError(f"{self.option(name)} must be a number of seconds >= 0")
            if name != "queue_timeout" and value == 0:
                raise InvalidOptionError(f"{self.option(name)} must be more than 0 seconds")
        if self.max_size is not None and self.max_size < 4096:
            raise InvalidOptionError(f"{self.option('max_size')} must be at least 4 KiB")
        if self.api_key is not None and not self.api_key.strip():
            raise InvalidOptionError("the API key must not be blank")
        self._check_names("models", self.models, _MODEL_NAME, "a model name (letters, digits, "
                          "'_', '.', ':', '/' or '-', at most 128)")  # fmt: skip
        self._check_names("cors_origins", self.cors_origins, _ORIGIN,
                          "an origin (scheme://host[:port], no path) or *")  # fmt: skip
        self._check_names("allowed_hosts", self.allowed_hosts or [], _HOST_PATTERN,
                          "a host name (no port), *.domain or *")  # fmt: skip
        if self.allowed_hosts is not None and not self.allowed_hosts:
            raise InvalidOptionError(f"{self.option('allowed_hosts')} must name a host (or *)")

    def _check_names(
        self, name: str, values: list[str], pattern: re.Pattern[str], what: str
    ) -> None:
        for value in values:
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise InvalidOptionError(f"{self.option(name)}: {value!r} is not {what}")

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls) -> ServerConfig:
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            raise InvalidOptionError(f"{CONFIG_ENV} is not set: start the server with `serve`")
        return cls(**json.loads(raw))


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _descriptor_limit() -> int:
    """This process's limit on open descriptors (``ulimit -n``; a large number where there is
    none to read)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 1 << 16
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def load_voices(
    config: ServerConfig, document: dict[str, Any] | None = None
) -> dict[str, VoiceSpec]:
    """OpenAI's voices on ``config.engine``, then those of ``config.voices_file`` (which win).

    ``document`` is the file as :func:`read_voices_file` parsed it (None: read it here).

    Raises:
        InvalidOptionError: if the file cannot be read or parsed, or a voice is malformed (the
            message names the voice and the key).
    """
    voices = {
        name: VoiceSpec(name, config.engine, params | FIXED_SPEED, openai=True)
        for name, params in OPENAI_VOICES.items()
    }
    if document is None:
        document = read_voices_file(config)
    table = document.get("voices", {})
    if not isinstance(table, dict):
        raise InvalidOptionError(
            f"{config.option('voices_file')} {config.voices_file}: voices must be a table"
        )
    for name, entry in table.items():
        voices[name] = _voice(config, name, entry)
    return voices


def load_languages(
    config: ServerConfig, document: dict[str, Any] | None = None
) -> dict[str, str | None] | None:
    """The voices file's ``[languages]`` table: language (``zh``, ``ja``, ``ko``) -> the engine
    that reads a text in its script when a voice's own engine cannot (``""``: none, such a text
    is refused); None where the file has no such table (eSpeak's voices, the default).
    ``document`` as for :func:`load_voices`.

    Raises:
        InvalidOptionError: for a language that is not one of those, or a value not a string.
    """
    if document is None:
        document = read_voices_file(config)
    table = document.get("languages")
    if table is None:
        return None
    where = f"{config.option('voices_file')} {config.voices_file}: [languages]"
    if not isinstance(table, dict):
        raise InvalidOptionError(f"{where} must be a table")
    languages: dict[str, str | None] = {}
    for language, engine in table.items():
        if language not in LANGUAGE_NAMES:
            raise InvalidOptionError(
                f"{where}: {language!r} is not one of {', '.join(LANGUAGE_NAMES)} (the "
                "languages whose scripts a voice may spell letter by letter)"
            )
        if not isinstance(engine, str):
            raise InvalidOptionError(
                f'{where}: {language} must be an engine as --engine takes it, or "" for none'
            )
        languages[language] = engine or None
    return languages


def read_voices_file(config: ServerConfig) -> dict[str, Any]:
    """The voices file, parsed ({} without one): only ``[voices.NAME]`` and ``[languages]``.

    Raises:
        InvalidOptionError: if it cannot be read, is not UTF-8 TOML, or has other tables.
    """
    if config.voices_file is None:
        return {}
    option = config.option("voices_file")
    data = read_regular_file(config.voices_file, MAX_VOICES_FILE_BYTES, option)
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidOptionError(
            f"{option} {config.voices_file} is not UTF-8 (byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidOptionError(f"{option} {config.voices_file} is not TOML: {exc}") from exc
    unknown = set(document) - {"voices", "languages"}
    if unknown:
        raise InvalidOptionError(
            f"{option} {config.voices_file}: expected only [voices.NAME] and [languages] "
            f"tables, found {', '.join(sorted(unknown))}"
        )
    return document


def _voice(config: ServerConfig, name: str, entry: object) -> VoiceSpec:
    where = f"{config.option('voices_file')} {config.voices_file}: voice {name!r}"
    if not _VOICE_NAME.fullmatch(name):
        raise InvalidOptionError(f"{where}: a name is 1-64 letters, digits, '_', '.' or '-'")
    if not isinstance(entry, dict):
        raise InvalidOptionError(f"{where} must be a table")
    engine = entry.get("engine", config.engine)
    options = entry.get("engine_options", {})
    description = entry.get("description", "")
    if not isinstance(engine, str) or not engine:
        raise InvalidOptionError(f"{where}: engine must be a non-empty string")
    if not isinstance(options, dict):
        raise InvalidOptionError(f"{where}: engine_options must be a table")
    if not isinstance(description, str):
        raise InvalidOptionError(f"{where}: description must be a string")
    params = {key: value for key, value in entry.items() if key not in _RESERVED_KEYS}
    return VoiceSpec(name, engine, params, options, description)
