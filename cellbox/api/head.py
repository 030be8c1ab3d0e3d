"""``HEAD`` wherever ``GET`` is served: the GET answer's status and headers, no body.

HTTP requires HEAD of every resource GET serves (RFC 9110, 9.3.2); FastAPI routes serve
only the methods they name. A route that names HEAD itself (a file download answers it
without reading the file) keeps it; for the others the request runs as GET and uvicorn,
which sees the request's own method, sends no body.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send


def with_head(methods: Iterable[str]) -> set[str]:
    """The methods a path answers, given those its routes name."""
    served = set(methods)
    if "GET" in served:
        served.add("HEAD")
    return served


class HeadAsGet:
    """ASGI middleware: a HEAD that no route names is served by the path's GET route."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the router's own list: routes included later count too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD" and not self._named(scope):
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)

    def _named(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.routes)
