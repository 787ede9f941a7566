"""``sparktts-cache serve`` as a subprocess on a loopback port, for the server's tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .redis_server import free_port

#: How long a server may take to load its engines and answer /health.
START_SECONDS = 60.0


class SpeechServer:
    """A running server: its base URL, cache directory and log, and /metrics read back."""

    def __init__(
        self, cache_dir: Path, proc: subprocess.Popen[bytes], port: int, log: Path
    ) -> None:
        self.cache_dir = cache_dir
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample of /metrics (0 if absent): ``name{labels}``."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        wanted = f"{name}{{{labels}}}" if labels else name
        total = 0.0
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == wanted or (not labels and re.fullmatch(rf"{name}\{{.*\}}", sample)):
                total += float(value)
        return total

    def synthesised(self) -> float:
        return self.metric("sparktts_segments_synthesised_total")


@contextmanager
def running_server(cache_dir: Path, *options: str, env: dict[str, str] | None = None
                   ) -> Iterator[SpeechServer]:  # fmt: skip
    """Start ``serve`` with ``options`` and stop it afterwards (its log is kept for failures)."""
    port = free_port()
    log = cache_dir.parent / f"server-{port}.log"
    command = [sys.executable, "-m", "sparktts_cache", "--cache-dir", str(cache_dir), "serve",
               "--port", str(port), *options]  # fmt: skip
    environment = {**os.environ, **(env or {})}
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=environment)
    server = SpeechServer(cache_dir, proc, port, log)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
