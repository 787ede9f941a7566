"""HTTP errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Clients of OpenAI's API (its SDKs among them) read that shape to say what went wrong, so every
error this server answers has it, and none carries a traceback or a fact of the server's file
system.
"""

from __future__ import annotations

from typing import Any

__all__ = ["APIError", "error_body", "invalid"]


class APIError(Exception):
    """An error answered as JSON with ``status`` (raised by request handling, never by the library).

    Args:
        status: the HTTP status.
        message: what a client developer reads: which field was wrong and what it takes.
        param: the request field at fault, if one is.
        code: a short machine-readable reason (``"invalid_value"``, ``"unauthorized"``...).
        type: OpenAI's error type (``"invalid_request_error"`` for a client's mistake).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid(message: str, param: str | None, code: str = "invalid_value") -> APIError:
    """A 400 for a request field that is missing or has a value this server does not take."""
    return APIError(400, message, param=param, code=code)
