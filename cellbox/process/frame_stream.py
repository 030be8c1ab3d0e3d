"""A worker's protocol socket, read as frames the moment they arrive.

An asyncio protocol rather than a stream reader and a task: the event loop hands over the
bytes and the frames go straight into the worker's queue, which spares a task switch and
two ``readexactly`` calls on every frame of every execution.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cellbox import protocol

_HEADER = protocol.HEADER.size


class FrameStream(asyncio.Protocol):
    """Decoded frames into ``frames``; ``None`` there once the socket is closed."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.on_end: Callable[[], None] = lambda: None
        self.on_bad_frame: Callable[[Exception], None] = lambda exc: None
        self._pending = bytearray()  # the start of a frame not whole yet
        self._need = _HEADER  # bytes ``_pending`` must reach before a frame can be whole
        self._failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's own class)

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._need:
                return
            data = bytes(pending)
            pending.clear()
        start, size = 0, len(data)
        put = self.frames.put_nowait
        try:
            while size - start >= _HEADER:
                length = int.from_bytes(data[start : start + _HEADER], "big")
                if length > protocol.MAX_FRAME:
                    raise ValueError(f"frame of {length} bytes")
                end = start + _HEADER + length
                if end > size:
                    break
                put(protocol.decode(data[start + _HEADER : end]))
                start = end
        except Exception as exc:
            self._failed = True
            self.on_bad_frame(exc)
            return
        if start < size:
            pending += memoryview(data)[start:]
            self._need = max(_HEADER, _frame_size(pending))
        else:
            self._need = _HEADER

    def connection_lost(self, exc: Exception | None) -> None:
        self.frames.put_nowait(None)
        self.on_end()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _frame_size(start: bytearray) -> int:
    """The whole size of the frame ``start`` begins (0 while its header is incomplete)."""
    if len(start) < _HEADER:
        return 0
    return _HEADER + int.from_bytes(start[:_HEADER], "big")
