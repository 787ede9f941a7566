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

A voice may reuse one of OpenAI's names to replace its default. Parameters are checked when the
server starts: one the engine does not take stops the server with a message naming the voice.
"""

from __future__ import annotations

import dataclasses
import json
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

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_MAX_INPUT_CHARS",
    "MODELS",
    "OPENAI_VOICES",
    "ServerConfig",
    "VoiceSpec",
    "load_voices",
]

#: The environment variable through which ``serve`` hands its options to uvicorn's worker
#: processes (JSON of :class:`ServerConfig`).
CONFIG_ENV = "SPARKTTS_SERVER_CONFIG"
#: OpenAI's own limit on ``input``.
DEFAULT_MAX_INPUT_CHARS = 4096
#: The largest voices file read: thousands of voices (``/dev/zero`` is refused, not read forever).
MAX_VOICES_FILE_BYTES = 1 << 20
#: The model names accepted as ``model``: OpenAI's, all meaning the configured engines (what
#: engine speaks is the voice's business), and this server's own name.
MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "sparktts-cache")

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
#: Spark-TTS needs all three control parameters once ``gender`` is set.
_FIXED_SPEED = {"speed": "moderate"}

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
    """Everything ``sparktts-cache serve`` was told (see ``serve --help``).

    ``max_size`` is the cache directory's limit: segments and finished responses (blobs of the
    same store) share it, least recently used first.
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
    log_level: str = "info"

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: room for the longest input even if every character is
        JSON-escaped as a surrogate pair (12 bytes), plus 16 KiB for the other fields."""
        return 16 * 1024 + 12 * self.max_input_chars

    def check(self) -> None:
        """Raise InvalidOptionError for an option out of its range."""
        for name in ("port", "workers", "max_input_chars", "max_concurrent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidOptionError(f"--{name.replace('_', '-')} must be an int >= 0")
        if self.workers < 1 or self.max_input_chars < 1 or self.max_concurrent < 1:
            raise InvalidOptionError(
                "--workers, --max-input-chars and --max-concurrent must be at least 1"
            )
        if self.port > 65535:
            raise InvalidOptionError(f"--port must be 0-65535, not {self.port}")
        if self.max_size is not None and self.max_size < 4096:
            raise InvalidOptionError("--max-size must be at least 4 KiB")
        if self.api_key is not None and not self.api_key.strip():
            raise InvalidOptionError("the API key must not be blank")

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls) -> ServerConfig:
        raw = os.environ.get(CONFIG_ENV)
        if not raw:
            raise InvalidOptionError(f"{CONFIG_ENV} is not set: start the server with `serve`")
        return cls(**json.loads(raw))


def load_voices(config: ServerConfig) -> dict[str, VoiceSpec]:
    """OpenAI's voices on ``config.engine``, then those of ``config.voices_file`` (which win).

    Raises:
        InvalidOptionError: if the file cannot be read or parsed, or a voice is malformed (the
            message names the voice and the key).
    """
    voices = {
        name: VoiceSpec(name, config.engine, params | _FIXED_SPEED, openai=True)
        for name, params in OPENAI_VOICES.items()
    }
    if config.voices_file is None:
        return voices
    data = read_regular_file(config.voices_file, MAX_VOICES_FILE_BYTES, "--voices")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidOptionError(
            f"--voices {config.voices_file} is not UTF-8 (byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidOptionError(f"--voices {config.voices_file} is not TOML: {exc}") from exc
    table = document.get("voices")
    unknown = set(document) - {"voices"}
    if not isinstance(table, dict) or unknown:
        raise InvalidOptionError(
            f"--voices {config.voices_file}: expected only [voices.NAME] tables"
            + (f", found {', '.join(sorted(unknown))}" if unknown else "")
        )
    for name, entry in table.items():
        voices[name] = _voice(config, name, entry)
    return voices


def _voice(config: ServerConfig, name: str, entry: object) -> VoiceSpec:
    where = f"--voices {config.voices_file}: voice {name!r}"
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
