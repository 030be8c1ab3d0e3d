"""uvicorn's httptools protocol, sending each answer in one send, as soon as it is whole.

uvicorn writes the status line and headers the moment the app sends
``http.response.start``, and the body at ``http.response.body``: two sends on the socket,
each waking the client.

Here a connection's writes are held and go out together: a JSON answer (head and body) in
one send, the moment its last byte is written (``on_response_complete``), before the
request's own bookkeeping (uvicorn's, the middlewares' and the endpoint's returns), which
then runs while the client is being woken instead of before. Other writes (a stream's head
and events) wait at most for the end of the loop iteration that made them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _WritesPerIteration:
    """A connection's transport whose writes go out together: when the answer is whole
    (``flush``), else at the end of the iteration."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        held = self._held
        if not held:
            self._loop.call_soon(self.flush)
        held.append(data)

    def flush(self) -> None:
        """Send what waits (at the end of the loop iteration that wrote it): one
        ``writev``, without joining the pieces."""
        held = self._held
        if held:
            self._held = []
            if not self.transport.is_closing():
                self.transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's protocol for HTTP/1.1 on httptools: one send per answer, sent once whole."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _WritesPerIteration(transport, self.loop)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        """The answer is whole: send it now (uvicorn calls this right after its last write)."""
        wrapped = self.transport
        if isinstance(wrapped, _WritesPerIteration):
            wrapped.flush()
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        wrapped = self.transport
        if isinstance(wrapped, _WritesPerIteration):  # the upgraded protocol gets the socket's own
            wrapped.flush()
            self.transport = wrapped.transport
        super().handle_websocket_upgrade()
