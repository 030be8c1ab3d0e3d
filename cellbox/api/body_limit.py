"""Refuse request bodies over the configured size with a 413, before the app sees them."""

from __future__ import annotations

import asyncio
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellbox.api.responses import send_json

# After a 413 the rest of the body is read and dropped (up to these bounds) before the
# connection is closed: a server that closes with unread bytes in its socket makes the kernel
# reset the connection, and a client still sending (httpx's async client) then sees the
# reset instead of the 413. The answer itself goes out first, so a client that reads while
# it sends (curl, a forwarding cluster node) learns of it at once and stops sending.
_DRAIN_BYTES = 64 << 20
_DRAIN_S = 5.0


class BodyLimit:
    """ASGI middleware: reads the body (at most ``limit`` bytes) once, then replays it."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        streamed: re.Pattern[str] | None = None,
        stream_limit: int = 0,
    ) -> None:
        self.app = app
        self.limit = limit
        self.streamed = streamed  # PUTs to these paths stream (their route counts to stream_limit)
        self.stream_limit = stream_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        streams = (
            self.streamed is not None
            and scope["method"] == "PUT"
            and self.streamed.match(scope["path"]) is not None
        )
        limit = self.stream_limit if streams else self.limit
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _refuse(receive, send, limit, drain=True)
                    return
        if streams:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away before sending the body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _refuse(receive, send, self.limit, drain=message.get("more_body", False))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(receive: Receive, send: Send, limit: int, drain: bool) -> None:
    """Answer 413; then drop the rest of the body (if ``drain``) and close the connection."""
    message = f"request body too large (limit {limit} bytes)"
    await send_json(send, 413, {"message": message}, ((b"connection", b"close"),), more=drain)
    if drain:
        await _drain(receive)
        await send({"type": "http.response.body", "body": b""})


async def _drain(receive: Receive) -> None:
    """Read and drop what remains of the request body, within ``_DRAIN_*``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _DRAIN_S
    read = 0
    while read <= _DRAIN_BYTES:
        try:
            message = await asyncio.wait_for(receive(), deadline - loop.time())
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
