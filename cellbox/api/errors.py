"""API errors and their bodies: the 400 shape for every validation failure, else a message."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cellbox.api.head import with_head
from cellbox.api.responses import JSON
from cellbox.process.worker import WorkerStartError
from cellbox.sandbox.files import FileError
from cellbox.sandbox.link import NetworkError
from cellbox.sessions.execution import ContextGone
from cellbox.sessions.registry import ContextNotFound, ShuttingDown, TooManyContexts

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("cellbox.api")


class InvalidRequest(Exception):
    """A 400: one ``{"field", "error"}`` per bad field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def one(cls, field: str, error: str) -> InvalidRequest:
        return cls([{"field": field, "error": error}])


def _field_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic's errors as one entry per top-level JSON field."""
    seen: dict[str, str] = {}
    for error in errors:
        loc = list(error.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]  # where the value came from; the field is named next
        field = str(loc[0]) if loc and error.get("type") != "json_invalid" else "body"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "field required"
        elif field == "body" and error.get("type") in ("model_type", "model_attributes_type"):
            message = "must be a JSON object"
        elif len(loc) > 1:
            message = f"{'.'.join(map(str, loc[1:]))}: {message}"
        seen.setdefault(field, message)
    return [{"field": field, "error": message} for field, message in seen.items()]


def parse_body(model: type[M], body: bytes) -> M:
    """The request body as ``model``; :class:`InvalidRequest` naming each bad field."""
    if not body.strip():
        raise InvalidRequest.one("body", "a JSON object is required")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest.one("body", f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest.one("body", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(_field_errors(exc.errors(include_url=False))) from None


def _message(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSON:
    return JSON({"message": message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Map every error the API can raise to its status and body."""

    @app.exception_handler(InvalidRequest)
    async def invalid(_: Request, exc: InvalidRequest) -> JSON:
        return JSON({"message": "Invalid request", "errors": exc.errors}, 400)

    @app.exception_handler(RequestValidationError)
    async def invalid_params(_: Request, exc: RequestValidationError) -> JSON:
        errors = _field_errors(list(exc.errors()))
        return JSON({"message": "Invalid request", "errors": errors}, 400)

    @app.exception_handler(ContextNotFound)
    @app.exception_handler(ContextGone)
    async def not_found(_: Request, exc: Exception) -> JSON:
        text = str(exc)
        return _message(404, text if text.startswith("context ") else f"context {text} not found")

    @app.exception_handler(FileError)
    async def file_error(_: Request, exc: FileError) -> JSON:
        if exc.field is not None:
            errors = [{"field": exc.field, "error": exc.message}]
            return JSON({"message": "Invalid request", "errors": errors}, exc.status)
        return _message(exc.status, exc.message)

    @app.exception_handler(TooManyContexts)
    async def too_many(_: Request, exc: TooManyContexts) -> JSON:
        return _message(429, str(exc))

    @app.exception_handler(ShuttingDown)
    async def shutting_down(_: Request, exc: ShuttingDown) -> JSON:
        return _message(503, str(exc))

    @app.exception_handler(NetworkError)
    async def no_network(_: Request, exc: NetworkError) -> JSON:
        return _message(503, f"could not set up the context's network: {exc}")

    @app.exception_handler(WorkerStartError)
    async def no_worker(_: Request, exc: WorkerStartError) -> JSON:
        return _message(503, f"could not start a worker for the context: {exc}")

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSON:
        log.exception("unexpected error", exc_info=exc)
        return _message(500, f"internal error: {type(exc).__name__}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSON:
        if exc.status_code == 400:
            return JSON(
                {"message": "Invalid request", "errors": [{"field": "body", "error": exc.detail}]},
                400,
            )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first route of the path
            headers["Allow"] = ", ".join(allowed_methods(request))
        return _message(exc.status_code, str(exc.detail), headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers (405's ``Allow``)."""
    routes = request.app.router.routes
    named = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return sorted(with_head(named))
