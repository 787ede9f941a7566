"""The speech server against static files served by the same server process.

Each server runs as ``sparktts-cache serve`` itself (its logging, access log and middleware
included), started by this module's ``__main__``, which first adds one route to the app:
``/static/``, a Starlette ``StaticFiles`` mount of a directory. The baseline of a cached response
is then the same bytes served from that mount by the same process: what any web server would do
with a file, so the ratio is the whole cost of answering a speech request from the cache (parsing
and checking the request, keying it, finding and verifying the stored response).

The client is a minimal HTTP/1.1 client on asyncio streams (keep-alive, ``Content-Length`` and
chunked bodies) so that the client's own Python costs as little as possible of the two shared
cores: it is the same for both sides, and a heavier client would only dilute the ratio.

Command: ``.venv/bin/python -m benchmarks.run --only server`` (a few minutes, most of it the
first synthesis of the demo text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

#: The directory the ``/static/`` mount serves, handed to the server process.
STATIC_ENV = "SPARKTTS_BENCH_STATIC"
ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_server(work: Path, name: str, *options: str) -> AsyncIterator[str]:
    """A server with a ``/static/`` mount of ``work/<name>-static``; its base URL."""
    port = free_port()
    cache = work / f"{name}-cache"
    static = work / f"{name}-static"
    static.mkdir(parents=True, exist_ok=True)
    log = work / f"{name}.log"
    command = [sys.executable, "-m", "benchmarks.server", "--cache-dir", str(cache), "serve",
               "--port", str(port), *options]  # fmt: skip
    env = {**os.environ, STATIC_ENV: str(static), "PYTHONPATH": str(ROOT)}
    proc = _start(command, env, log)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text(errors='replace')}")
            with contextlib.suppress(OSError):
                status, _, _ = await _once(port, "GET", "/health")
                if status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            await asyncio.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as log_file:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=log_file)


async def _once(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = await Connection.open(f"127.0.0.1:{port}")
    try:
        return await connection.request(method, path)
    finally:
        await connection.close()


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                 ) -> None:  # fmt: skip
        self.address = address
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, address: str) -> Connection:
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(address, reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.address}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + data)
        await self.writer.drain()

    async def head(self) -> tuple[int, dict[str, str]]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        assert headers.get("transfer-encoding") == "chunked", headers
        pieces = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            pieces.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(piece[:-2] for piece in pieces)

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        await self.send(method, path, body)
        status, headers = await self.head()
        return status, headers, await self.body(headers)

    async def first_byte(self, method: str, path: str, body: dict[str, Any]) -> float:
        """Seconds from sending the request to the first byte of the response's body."""
        began = time.perf_counter()
        await self.send(method, path, body)
        status, headers = await self.head()
        assert status == 200, status
        if headers.get("transfer-encoding") == "chunked":
            await self.reader.readuntil(b"\r\n")  # the first chunk's size
        await self.reader.readexactly(1)
        return time.perf_counter() - began


def _serve_with_static_mount(argv: list[str]) -> int:
    """``sparktts-cache`` with ``argv``, its server's app given the ``/static/`` mount."""
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from sparktts_cache._cli import main
    from sparktts_cache.server.app import extra_routes

    extra_routes.append(Mount("/static", app=StaticFiles(directory=os.environ[STATIC_ENV])))
    return main(argv)


if __name__ == "__main__":
    sys.exit(_serve_with_static_mount(sys.argv[1:]))
