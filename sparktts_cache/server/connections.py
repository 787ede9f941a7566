"""uvicorn's HTTP/1.1 protocol with the limits it lacks: a deadline for a request's headers, one
for its body, and a cap on open connections.

uvicorn closes a kept-alive connection that stays idle for ``timeout_keep_alive``, but sets no
deadline while a request arrives: a client that sends its headers or its body a byte a second
holds its connection, and a descriptor, for good. A few hundred such clients use up the process's
descriptors; then every ``accept`` fails (asyncio logs a traceback for each, many a second) and
normal requests time out. uvicorn's ``limit_concurrency`` answers 503 only once a request's
headers are in, so it bounds none of them.

:class:`GuardedH11Protocol` is uvicorn's h11 protocol (the one it uses without httptools) with:

- ``header_timeout``: from a connection's opening, or from the first byte of a kept-alive
  connection's next request, its headers must be in within this time;
- ``body_timeout``: from the end of the headers, the whole body must be in within this time;
- ``max_connections``: a connection opened while this many are open is answered 503 at once and
  closed, so the descriptors in use stay bounded whatever clients do.

A request past a deadline is answered 408 (in OpenAI's error shape, with ``Connection: close``)
if its response has not started, and its connection is closed; the application sees the
client disconnect. Each of these is counted, and logged at most once a minute, with the count.
The deadlines are totals, not gaps between reads: a byte a second does not renew them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import error_body

__all__ = ["TIMED_OUT", "ConnectionLimits", "GuardedH11Protocol"]

log = logging.getLogger("sparktts_cache.server")

#: The key a request's ASGI scope gets when its body was answered 408 here (for the access log).
TIMED_OUT = "sparktts_cache.timed_out"
#: Seconds between two log lines about refused or timed-out connections (each says how many).
NOTICE_SECONDS = 60.0


@dataclass(frozen=True)
class ConnectionLimits:
    """``--header-timeout`` and ``--body-timeout`` (seconds) and ``--max-connections``."""

    header_timeout: float
    body_timeout: float
    max_connections: int


class _Notice:
    """A warning logged at most once per :data:`NOTICE_SECONDS`, with the count since the last
    (a flood of slow clients must not become a flood of log lines)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.count = 0
        self.logged_at = -NOTICE_SECONDS

    def note(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= NOTICE_SECONDS:
            log.warning("%s (%d since the last such message)", self.message, self.count)
            self.logged_at, self.count = now, 0


_REFUSED = _Notice("connections refused: --max-connections are open")
_HEADERS_LATE = _Notice("connections closed: the request's headers took over --header-timeout")
_BODY_LATE = _Notice("connections closed: the request's body took over --body-timeout")


def _canned(status: int, reason: str, message: str, code: str) -> bytes:
    """A whole response that closes the connection, written straight to the transport."""
    body = json.dumps(error_body(message, "invalid_request_error", None, code)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode("ascii") + b"\r\n" + body


_TOO_MANY = _canned(503, "Service Unavailable", "too many connections; try again shortly",
                    "too_many_connections")  # fmt: skip
_HEADERS_TIMEOUT = _canned(408, "Request Timeout", "the request's headers did not arrive in time",
                           "request_timeout")  # fmt: skip
_BODY_TIMEOUT = _canned(408, "Request Timeout", "the request's body did not arrive in time",
                        "request_timeout")  # fmt: skip


class GuardedH11Protocol(H11Protocol):
    """uvicorn's ``H11Protocol`` with :class:`ConnectionLimits` (pass it to ``uvicorn.run`` as
    ``http=functools.partial(GuardedH11Protocol, limits=...)``).

    It follows the client's side of h11's state machine after each read: ``IDLE`` (a request's
    head arriving) runs the header deadline, ``SEND_BODY`` the body deadline, anything else
    (the request is in, or the connection is ending) none.
    """

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting: str | None = None  # "headers" or "body": what the deadline is for

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        if len(self.server_state.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            transport.write(_TOO_MANY)
            transport.close()
            _REFUSED.note()
            return
        super().connection_made(transport)
        self._start_deadline("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._refused:  # never counted among the connections, never given a request
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._follow_client(reading=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_client(reading=False)

    def _follow_client(self, reading: bool) -> None:
        """Run the deadline of what the client is sending now. After a response, an idle
        connection is uvicorn's keep-alive timer's: the header deadline starts with the next
        request's first byte (``reading``)."""
        if self.transport.is_closing():
            self._cancel_deadline()
            return
        state = self.conn.their_state
        if state is h11.IDLE and reading:
            if self._awaiting != "headers":
                self._start_deadline("headers")
        elif state is h11.SEND_BODY:
            if self._awaiting != "body":
                self._start_deadline("body")
        else:
            self._cancel_deadline()

    def _start_deadline(self, awaiting: str) -> None:
        self._cancel_deadline()
        limits = self.limits
        seconds = limits.header_timeout if awaiting == "headers" else limits.body_timeout
        self._awaiting = awaiting
        self._deadline = self.loop.call_later(seconds, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._awaiting = None

    def _deadline_passed(self) -> None:
        awaiting, self._deadline, self._awaiting = self._awaiting, None, None
        if self.transport.is_closing():
            return
        (_HEADERS_LATE if awaiting == "headers" else _BODY_LATE).note()
        cycle = self.cycle if awaiting == "body" else None
        if cycle is None or not cycle.response_started:
            self.transport.write(_HEADERS_TIMEOUT if awaiting == "headers" else _BODY_TIMEOUT)
        if cycle is not None:
            # The application, reading the body, sees the client disconnect; what it sends
            # after this is dropped (the 408 is the response).
            cycle.disconnected = True
            cycle.message_event.set()
            if not cycle.response_started:
                cycle.scope[TIMED_OUT] = 408  # type: ignore[literal-required]
        self.transport.close()
