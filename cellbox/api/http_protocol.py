"""uvicorn's httptools protocol, sending what one event-loop iteration writes in one send.

uvicorn writes the status line and headers the moment the app sends
``http.response.start``, and the body at ``http.response.body``: two sends on the socket.
Worse, the send that completes an answer wakes the client, which on a loaded or small
machine may run at once on this CPU, before the server has finished with the request
(uvicorn's bookkeeping, the middlewares' and the endpoint's returns): that work then
waits for the client and delays the client's next request.

Here a connection's writes wait for the end of the loop iteration that made them and go
out together: a JSON answer (head and body) in one send, after the request's own code is
done. Nothing waits longer than that iteration: a stream's head and events go out as
they are written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _WritesPerIteration:
    """A connection's transport whose writes go out together at the end of the iteration."""

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
    """uvicorn's protocol for HTTP/1.1 on httptools, one send per loop iteration."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _WritesPerIteration(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        wrapped = self.transport
        if isinstance(wrapped, _WritesPerIteration):  # the upgraded protocol gets the socket's own
            wrapped.flush()
            self.transport = wrapped.transport
        super().handle_websocket_upgrade()
