"""A bounded pipe of byte chunks between the event loop and one file thread.

Streaming archives both ways needs a blocking side (``tarfile`` on a file thread) and an async
side (the HTTP body). At most ``depth`` chunks wait in between, so memory stays bounded whatever
the size; closing the pipe from the loop side frees a thread blocked on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any

_EOF = None
_ABORT = b""  # never sent as data: empty chunks are dropped


class PipeClosed(Exception):
    """The other side went away."""


class Pipe:
    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = 8) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(depth)
        self.closed = False

    # -- event loop side --------------------------------------------------------------

    async def send(self, chunk: bytes | BaseException | None) -> None:
        """Queue a chunk (``None``: end of data); waits while the pipe is full."""
        if not self.closed and (chunk is None or chunk):
            await self._queue.put(chunk)

    async def receive(self) -> bytes | None:
        """The next chunk, ``None`` at the end; re-raises an exception the thread sent."""
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the pipe: a thread blocked on it wakes up and gets ``PipeClosed``."""
        if self.closed:
            return
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_ABORT)

    # -- thread side ------------------------------------------------------------------

    def _wait(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        if self.closed:
            raise PipeClosed("the other side of the stream went away")
        future = asyncio.run_coroutine_threadsafe(make(), self._loop)
        while True:  # close() always lets the coroutine finish; a closed loop never will
            try:
                return future.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if self._loop.is_closed():
                    raise PipeClosed("the server is stopping") from None

    def put(self, chunk: bytes | BaseException | None) -> None:
        """Blocking ``send`` for the thread; ``PipeClosed`` if the loop side closed."""
        self._wait(lambda: self.send(chunk))
        if self.closed:
            raise PipeClosed("the other side of the stream went away")

    def get(self) -> bytes | None:
        item = self._wait(self._queue.get)
        if item is _ABORT or isinstance(item, BaseException):
            raise PipeClosed("the stream was cut off")
        return item  # type: ignore[return-value]


class PipeReader:
    """A read-only file object over the thread side of a :class:`Pipe`."""

    def __init__(self, pipe: Pipe) -> None:
        self._pipe = pipe
        self._chunk = b""
        self._offset = 0  # into _chunk: slicing off the rest would copy it on every read
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        while size != 0:
            if self._offset >= len(self._chunk):
                chunk = None if self._ended else self._pipe.get()
                if chunk is None:
                    self._ended = True
                    break
                self._chunk, self._offset = chunk, 0
            left = len(self._chunk) - self._offset
            take = left if size < 0 else min(size, left)
            parts.append(self._chunk[self._offset : self._offset + take])
            self._offset += take
            if size > 0:
                size -= take
        return b"".join(parts)
