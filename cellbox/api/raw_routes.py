"""The ASGI app the server serves: the hot routes go past FastAPI, which still documents them.

FastAPI's per-request machinery cost more server CPU than the rest of a warm execution:
its routing, dependency solving and ``Request``/``Response`` objects, and before them the
layers every request passes (FastAPI's and Starlette's entry points, the server-error
middleware, telemetry, FastAPI's own body limit). ``POST`` to a raw endpoint's path
passes only the API's own checks (the token, cluster routing, the body limit: the same
middleware classes FastAPI runs for every other route) and reaches its endpoint, whose
errors go to the app's own exception handlers: it answers exactly as through FastAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

RawEndpoint = Callable[[Scope, Receive, Send], Awaitable[None]]


class RawRoutes:
    """ASGI app: ``POST <path>`` of a raw endpoint through ``checked``; the rest to FastAPI."""

    def __init__(
        self,
        fastapi: FastAPI,
        posts: Mapping[str, RawEndpoint],
        checked: Callable[[ASGIApp], ASGIApp],
    ) -> None:
        self.fastapi = fastapi  # serves everything else; its handlers answer errors here
        self.posts = dict(posts)
        self.raw = checked(self._endpoint)

    @property
    def state(self) -> Any:
        return self.fastapi.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.posts:
            scope["app"] = self.fastapi  # as Starlette sets it, for the error handlers
            await self.raw(scope, receive, send)
        else:
            await self.fastapi(scope, receive, send)

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.posts[scope["path"]](scope, receive, tracked)
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
