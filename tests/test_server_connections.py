"""Slow clients against a real server over real sockets: headers or a body trickled a byte at a
time are cut at ``--header-timeout`` and ``--body-timeout`` (a 408, then the connection closed),
connections past ``--max-connections`` are answered 503 at once, and the server goes on serving
normal requests, logging one line per kind of trouble (not a traceback per connection).

Bounded: a handful of connections, deadlines of one second, and generous limits on how long the
server may take to act on them."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .speech_server import SpeechServer, running_server

pytestmark = pytest.mark.slow

LIMITS = ["--header-timeout", "1", "--body-timeout", "1", "--max-connections", "4"]
#: How long the server may take to cut a connection whose deadline (1 s) has passed.
CUT_WITHIN = 10.0
HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
BODY_HEAD = (b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n")  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SpeechServer]:
    with running_server(tmp_path / "cache", *LIMITS) as running:
        time.sleep(0.5)  # the start-up probes' connections close
        yield running


def connect(server: SpeechServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=CUT_WITHIN)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes (or resets) the connection."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                  if line.startswith(b"content-length:"))  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


class Trickler:
    """Sends one byte every 0.2 s on a connection until stopped or the server closes it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(0.2):
            try:
                self.sock.sendall(b"a")
            except OSError:
                return

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


def assert_not_answered(sock: socket.socket) -> None:
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(CUT_WITHIN)


def test_trickled_headers_and_bodies_are_cut_and_extra_connections_refused(
    server: SpeechServer,
) -> None:
    # One new connection trickling its headers; one kept-alive connection trickling its second
    # request's headers after a first answered request; two trickling a body.
    fresh = connect(server)
    fresh.sendall(HEAD)
    kept = connect(server)
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_response(kept).startswith(b"HTTP/1.1 200")
    kept.sendall(HEAD)
    bodies = [connect(server) for _ in range(2)]
    for sock in bodies:
        sock.sendall(BODY_HEAD + b'{"model"')
    slow = [fresh, kept, *bodies]
    began = time.monotonic()
    tricklers = [Trickler(sock) for sock in slow]
    try:
        for sock in slow:
            assert_not_answered(sock)
        # The limit is reached: more connections are answered 503 at once and closed.
        for _ in range(6):
            with connect(server) as extra:
                refused = read_until_closed(extra)
            assert refused.startswith(b"HTTP/1.1 503"), refused
            assert json.loads(refused.partition(b"\r\n\r\n")[2])["error"]["code"] == (
                "too_many_connections"
            )
        answers = [read_until_closed(sock) for sock in slow]
        elapsed = time.monotonic() - began
    finally:
        for trickler in tricklers:
            trickler.stop()
        for sock in slow:
            sock.close()
    assert elapsed < CUT_WITHIN, elapsed
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"connection: close" in answer.lower()
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    # The slots are free again: normal requests are served.
    for _ in range(8):
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log
    for kind in ("--max-connections", "--header-timeout", "--body-timeout"):
        assert log.count(kind) == 1, (kind, log)  # one line each, counting the rest
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [line["status"] for line in lines if line["method"] == "POST"] == [408, 408]


def test_a_request_in_time_is_not_cut(server: SpeechServer) -> None:
    """Deadlines are for the request's arrival, not for the response: a synthesis longer than
    both runs to its end, and a body sent in a few pieces within the deadline is taken."""
    body = json.dumps({"model": "tts-1", "voice": "nova", "input": "Slow but in time. " * 8})
    with connect(server) as sock:
        head = (
            "POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        for start in range(0, len(body), 40):
            sock.sendall(body[start : start + 40].encode())
            time.sleep(0.05)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert len(answer) > 10_000
