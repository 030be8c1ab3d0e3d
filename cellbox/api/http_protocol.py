"""uvicorn's httptools protocol, sending each response's head together with its body.

uvicorn writes the status line and headers the moment the app sends
``http.response.start``, and the body at ``http.response.body``: two sends on the socket,
so the client waiting for the answer is woken twice and reads it in two pieces. Here the
head waits for the next write: when the body follows at once (every JSON answer, sent by
``send_json`` back to back) both go out in one send. A head whose body is not written in the
same event-loop iteration (a stream whose first event is still to come) goes out at the end
of that iteration, so no answer's head is held back by its body.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_STATUS_LINE = b"HTTP/1.1 "  # how uvicorn's every response head (and 100 Continue) begins


class _HeadWithBody:
    """A connection's transport whose writes of a response head wait for the next write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self.transport.write(head + data)
        elif data.startswith(_STATUS_LINE):
            self._head = data
            self._loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Send a head still waiting (at the end of the loop iteration that wrote it)."""
        head = self._head
        if head is not None:
            self._head = None
            if not self.transport.is_closing():
                self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's protocol for HTTP/1.1 on httptools, with one send per JSON answer."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _HeadWithBody(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        wrapped = self.transport
        if isinstance(wrapped, _HeadWithBody):  # the upgraded protocol gets the socket's own
            wrapped.flush()
            self.transport = wrapped.transport
        super().handle_websocket_upgrade()
