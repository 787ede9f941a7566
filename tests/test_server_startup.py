"""``serve`` that cannot start says why in one line on stderr and exits 2 (bad usage), before it
listens: nothing is read without a bound, and nothing hangs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from .redis_server import free_port
from .test_cli import cli

pytestmark = pytest.mark.slow

#: An address space big enough for the server's imports and an engine, far too small for a read
#: of /dev/zero to go unnoticed.
MEMORY = 3 << 30


def serve(tmp_path: Path, *options: str, port: int | None = None) -> tuple[int, str]:
    done = cli(
        tmp_path / "cache", "serve", "--port", str(port or free_port()), *options,
        timeout=60, memory=MEMORY,
    )  # fmt: skip
    assert done.stdout == ""
    return done.returncode, done.stderr


def voices_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "voices.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--engine", "no-such"], "no TTS engine named 'no-such'"),
        (["--engine", "spark:."], 'pip install "sparktts_cache[spark]"'),  # an extra not installed
        (["--engine", "piper:/dev/zero"], "the Piper voice '/dev/zero' is not a regular file"),
        (["--voices", "/dev/zero"], "--voices '/dev/zero' is not a regular file"),
        (["--voices", "no-such.toml"], "--voices 'no-such.toml': No such file or directory"),
        (["--port", "70000"], "--port must be 0-65535"),
        (["--max-concurrent", "0"], "--max-concurrent must be at least 1"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(
    tmp_path: Path, options: list[str], expected: str
) -> None:
    status, stderr = serve(tmp_path, *options)
    assert status == 2 and stderr.count("\n") == 1, stderr
    assert stderr.startswith("sparktts-cache serve: ") and expected in stderr, stderr


@pytest.mark.parametrize(
    ("voices", "expected"),
    [
        (
            '[voices.x]\nengine = "espeak"\nfoo = 3\n',
            "voice 'x': its engine takes no parameter foo",
        ),
        ('[voices.x]\nengine = "piper:/dev/zero"\n', "the Piper voice '/dev/zero'"),
        ("[voices.x\n", "is not TOML"),
        ("[other]\n", "expected only [voices.NAME] and [languages] tables, found other"),
    ],
)
def test_a_bad_voices_file_is_one_line_and_exit_2(
    tmp_path: Path, voices: str, expected: str
) -> None:
    status, stderr = serve(tmp_path, "--voices", voices_file(tmp_path, voices))
    assert status == 2 and stderr.count("\n") == 1, stderr
    assert expected in stderr, stderr


def test_a_voices_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "voices.toml"
    os.mkfifo(fifo)  # no writer: an open that blocked would wait for good
    status, stderr = serve(tmp_path, "--voices", str(fifo))
    assert status == 2 and "is not a regular file" in stderr, stderr


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = serve(tmp_path, port=port)
    assert status == 2 and stderr.count("\n") == 1, stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SPARKTTS_PORT", "abc", "SPARKTTS_PORT: invalid int value: 'abc'"),
        ("SPARKTTS_PORT", "70000", "SPARKTTS_PORT must be 0-65535, not 70000"),
        ("SPARKTTS_MAX_CONCURRENT", "0", "SPARKTTS_MAX_CONCURRENT must be at least 1"),
        ("SPARKTTS_MAX_SIZE", "lots", "SPARKTTS_MAX_SIZE: not a size: 'lots'"),
        ("SPARKTTS_CACHE_HEADERS", "maybe", "SPARKTTS_CACHE_HEADERS: not a boolean: 'maybe'"),
        ("SPARKTTS_LOG_LEVEL", "loud", "SPARKTTS_LOG_LEVEL: invalid choice: 'loud'"),
        ("SPARKTTS_QUEUE_TIMEOUT", "-1", "SPARKTTS_QUEUE_TIMEOUT must be a number of seconds"),
        ("SPARKTTS_HEADER_TIMEOUT", "nan", "SPARKTTS_HEADER_TIMEOUT: not a number of seconds"),
        ("SPARKTTS_BODY_TIMEOUT", "0", "SPARKTTS_BODY_TIMEOUT must be more than 0 seconds"),
        ("SPARKTTS_MAX_CONNECTIONS", "0", "SPARKTTS_MAX_CONNECTIONS must be at least 1"),
        ("SPARKTTS_CORS_ORIGINS", "app.example", "SPARKTTS_CORS_ORIGINS: 'app.example' is not"),
        ("SPARKTTS_ALLOWED_HOSTS", "a.example:80", "SPARKTTS_ALLOWED_HOSTS: 'a.example:80'"),
        ("SPARKTTS_MODELS", "tts 2", "SPARKTTS_MODELS: 'tts 2' is not a model name"),
        ("SPARKTTS_VOICES", "/dev/zero", "SPARKTTS_VOICES '/dev/zero' is not a regular file"),
        ("SPARKTTS_ENGINE", "no-such", "no TTS engine named 'no-such'"),
    ],
)
def test_a_bad_value_in_the_environment_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    arguments = [] if variable == "SPARKTTS_PORT" else ["--port", str(free_port())]
    done = cli(tmp_path / "cache", "serve", *arguments, timeout=60, memory=MEMORY)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("sparktts-cache serve: ") and expected in done.stderr


def test_the_command_line_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARKTTS_MAX_CONCURRENT", "0")  # checked before the port: not used
    monkeypatch.setenv("SPARKTTS_PORT", "8000")
    done = cli(tmp_path / "cache", "serve", "--max-concurrent", "2", "--port", "70000",
               timeout=60, memory=MEMORY)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == "sparktts-cache serve: --port must be 0-65535, not 70000\n"


def test_more_connections_than_descriptors_is_refused(tmp_path: Path) -> None:
    status, stderr = serve(tmp_path, "--max-connections", str(1 << 40))
    assert status == 2 and stderr.count("\n") == 1, stderr
    assert "--max-connections" in stderr and "ulimit -n" in stderr, stderr
