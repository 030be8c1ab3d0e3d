"""A worker's protocol socket, read as frames the moment they arrive.

An asyncio protocol rather than a stream reader and a task: the event loop hands over the
bytes and the frames go straight into the worker's queue, which spares a task switch and
two ``readexactly`` calls on every frame of every execution.

Memory stays bounded whatever the worker (which runs the user's code, so may write
anything on its socket) sends: a frame longer than ``limit`` is never buffered. Its first
bytes tell its type, and it is passed on as ``{"type": "oversized", "kind": type, "bytes":
length}`` while the rest of it is read and thrown away. Rich items (``display`` and
``result`` frames) are passed on with their size on the socket as ``bytes``, which the
execution's item cap counts.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from cellbox import protocol
from cellbox.fifo import Fifo

_HEADER = protocol.HEADER.size
_HEAD = 64  # payload bytes of an oversized frame read to tell its type
_TYPE = re.compile(rb'\{"type":"(\w{1,32})"')  # how both workers' frames begin
# Frames waiting to be taken before the socket is read no further: the code in a worker can
# write frames to it while no execution takes them (they would pile up in the server).
PAUSE_AT = 4096
RESUME_AT = PAUSE_AT // 2


class FrameStream(asyncio.Protocol):
    """Decoded frames into ``frames``; ``None`` there once the socket is closed.

    Reading pauses while more than ``PAUSE_AT`` frames wait, until half of them are taken.
    """

    def __init__(self, limit: int = protocol.MAX_FRAME) -> None:
        self.limit = limit  # longer frames are skipped unread, told as ``oversized``
        self.frames: Fifo[dict[str, Any] | None] = Fifo(self._taken)
        self._paused = False
        self.transport: asyncio.Transport | None = None
        self.on_end: Callable[[], None] = lambda: None
        self.on_bad_frame: Callable[[Exception], None] = lambda exc: None
        self._pending = bytearray()  # the start of a frame not whole yet
        self._need = _HEADER  # bytes ``_pending`` must reach before a frame can be whole
        self._failed = False
        self._skip = 0  # bytes of an oversized frame still to be thrown away

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's own class)

    def data_received(self, data: bytes) -> None:
        if self._failed:
            return
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._need:
                return
            data = bytes(pending)
            pending.clear()
        start, size = 0, len(data)
        put = self.frames.put_nowait
        limit = self.limit
        try:
            while size - start >= _HEADER:
                length = int.from_bytes(data[start : start + _HEADER], "big")
                if length > protocol.MAX_FRAME:
                    raise protocol.ProtocolError(f"a frame of {length} bytes")
                body = start + _HEADER
                end = body + length
                if length > limit:
                    head = min(_HEAD, length)
                    if size - body < head:
                        break  # its type is not readable yet
                    put(_oversized(data[body : body + head], length))
                    if end > size:
                        self._skip = end - size
                        start = size
                        break
                    start = end
                    continue
                if end > size:
                    break
                frame = protocol.decode_worker_frame(data[body:end])
                if frame["type"] in protocol.ITEM_KINDS:
                    frame["bytes"] = length
                put(frame)
                start = end
        except Exception as exc:
            self._failed = True
            self.on_bad_frame(exc)
            return
        if start < size:
            pending += memoryview(data)[start:]
            self._need = max(_HEADER, self._frame_size(pending))
        else:
            self._need = _HEADER
        transport = self.transport
        if self.frames.qsize() > PAUSE_AT and not self._paused and transport is not None:
            self._paused = True
            transport.pause_reading()

    def _taken(self) -> None:
        if self._paused and self.frames.qsize() <= RESUME_AT:
            self._paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.frames.put_nowait(None)
        self.on_end()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _frame_size(self, start: bytearray) -> int:
        """The bytes of the frame ``start`` begins that are needed at once: all of it, or
        only its head if it is too long to keep (0 while its header is incomplete)."""
        if len(start) < _HEADER:
            return 0
        length = int.from_bytes(start[:_HEADER], "big")
        return _HEADER + (min(_HEAD, length) if length > self.limit else length)


def _oversized(head: bytes, length: int) -> dict[str, Any]:
    """What is passed on for a frame too long to keep: its type (from its first bytes)."""
    match = _TYPE.match(head)
    kind = match.group(1).decode() if match else "unknown"
    return {"type": "oversized", "kind": kind, "bytes": length}
