"""JSON responses encoded with orjson (fast, and exact about non-ASCII text)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse
from starlette.types import Send


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def send_json(
    send: Send,
    status: int,
    content: Any,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    more: bool = False,
) -> None:
    """Answer from an ASGI middleware, before the app, with a JSON body (``more``: the
    caller ends the answer later, with an empty last body message)."""
    payload = orjson.dumps(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": more})
