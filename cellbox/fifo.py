"""A FIFO that a coroutine waits on: the frames a worker sends, the events of an execution.

``asyncio.Queue`` does more than these need (a size bound with waiting writers, ``join``,
several waiting readers each with its own future) and costs it on every item: a put and a
get are some ten Python calls, and every wait asks for the running loop (a ``getpid()``
system call in CPython 3.11). Here a put is an append and at most one future's result;
every warm execution puts and gets four items.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Fifo(Generic[T]):
    """Items in order for whoever awaits ``get``, in one event loop."""

    def __init__(self, taken: Callable[[], None] | None = None) -> None:
        self._items: deque[T] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None  # asked for at the first wait
        self._waiter: asyncio.Future[None] | None = None
        self._taken = taken  # called after each item is taken

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            waiter = self._waiter
            if waiter is None or waiter.done():  # done: cancelled with a reader that gave up
                if self._loop is None:  # (only a waiting reader needs it: /execute reads none)
                    self._loop = asyncio.get_running_loop()
                waiter = self._waiter = self._loop.create_future()
            await waiter
        return self.get_nowait()

    def get_nowait(self) -> T:
        """The next item; ``IndexError`` if there is none."""
        item = self._items.popleft()
        if self._taken is not None:
            self._taken()
        return item

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)
