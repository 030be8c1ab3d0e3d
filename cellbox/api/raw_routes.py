"""Hot routes served as plain ASGI, ahead of FastAPI's routing (which still documents them).

FastAPI's per-request machinery (its nested router, dependency solving, ``Request`` and
``Response`` objects) cost more server CPU than the rest of a warm execution. A route
served here answers exactly as through FastAPI: its errors go to the app's own exception
handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

RawEndpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


class RawRoutes:
    """ASGI middleware: ``POST <path>`` goes straight to its raw endpoint."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI, posts: Mapping[str, RawEndpoint]) -> None:
        self.app = app
        self.fastapi = fastapi  # whose exception handlers answer the endpoints' errors
        self.posts = dict(posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.posts.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await endpoint(scope, receive, tracked)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None or started:
                raise
            response: Response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[..., Awaitable[Response]] | None:
        handlers = self.fastapi.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None


class Served(Response):
    """A FastAPI route's answer that runs a raw endpoint (when reached through FastAPI)."""

    def __init__(self, endpoint: RawEndpoint, request: Request) -> None:
        self.endpoint = endpoint
        self.receive = request.receive
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, self.receive, send)
