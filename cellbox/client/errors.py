"""Exceptions of the client: one per kind of API error, plus transport failures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class CellboxError(Exception):
    """Base of every error this client raises."""


class ConfigurationError(CellboxError, ValueError):
    """The client was given a server URL it cannot use (e.g. one without ``http://``)."""


class ConnectionFailed(CellboxError, ConnectionError):
    """The server could not be reached, or the connection dropped mid-answer."""


class RequestTimeout(CellboxError, TimeoutError):
    """The server did not answer within the client's timeout."""


class StreamClosed(CellboxError):
    """An execution's events were asked for again after a loop over them stopped early."""


@dataclass(frozen=True)
class FieldError:
    field: str
    error: str


class APIError(CellboxError):
    """The server answered with an error status; ``message`` is the server's own."""

    status: int = 0

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.body = body

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})"


class InvalidRequest(APIError):
    """400: the server names each bad field in ``errors``."""

    status = 400

    @property
    def errors(self) -> list[FieldError]:
        entries = self.body.get("errors", []) if isinstance(self.body, dict) else []
        return [FieldError(str(e.get("field", "")), str(e.get("error", ""))) for e in entries]

    def __str__(self) -> str:
        details = "; ".join(f"{e.field}: {e.error}" for e in self.errors)
        return f"{self.message}: {details}" if details else self.message


class Unauthorized(APIError):
    """401: missing or wrong API token."""

    status = 401


class Forbidden(APIError):
    """403: the context itself may not do this (e.g. a file it cannot read)."""

    status = 403


class NotFound(APIError):
    status = 404


class ContextNotFound(NotFound):
    """404: the context does not exist (any more)."""


class FileNotFound(NotFound):
    """404: the context exists, the file (or directory) does not."""


class PayloadTooLarge(APIError):
    status = 413


class TooManyContexts(APIError):
    status = 429


class InsufficientStorage(APIError):
    """507: the upload would exceed the context's disk quota."""

    status = 507


class ServiceUnavailable(APIError):
    """503: shutting down, or the node holding the context is unreachable."""

    status = 503


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    413: PayloadTooLarge,
    429: TooManyContexts,
    503: ServiceUnavailable,
    507: InsufficientStorage,
}


def error_for(status: int, content: bytes) -> APIError:
    """The exception for an error answer (``status`` >= 400) and its raw body."""
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str):
        message = content.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    if status == 404:
        kind: type[APIError] = NotFound
        if message.startswith("context "):
            kind = ContextNotFound
        elif message.startswith(("file not found", "directory not found")):
            kind = FileNotFound
    else:
        kind = _BY_STATUS.get(status, APIError)
    return kind(message, status, body)
