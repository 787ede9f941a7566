"""Real ``redis-server`` processes for the tests, on loopback ports."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .system_programs import require_program, unavailable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throw-away redis-server on 127.0.0.1 that a test can stop and start again (the test is
    skipped where redis-server is not installed, and fails there in CI)."""

    def __init__(
        self, directory: Path, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = require_program("redis-server")
        self.directory = directory
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--protected-mode", "yes",
             *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have stopped it (SIGSTOP)
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


def started_redis(directory: Path, extra_args: Sequence[str] = ()) -> RedisServer:
    """A RedisServer in ``directory``, started with ``extra_args`` (``--maxmemory``, ...); the
    test skips (fails in CI) if none can be."""
    server = RedisServer(directory, extra_args=extra_args)
    try:
        server.start()
    except RuntimeError as exc:
        unavailable(f"no Redis server can be started here: {exc}")
    return server
