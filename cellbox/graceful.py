"""Graceful shutdown: the first SIGTERM/SIGINT drains the contexts, then uvicorn stops.

uvicorn's own shutdown closes the listening socket at once and gives open connections a
fixed time. cellbox needs the opposite order: keep answering (new executions get a 503),
let the executions already accepted finish within ``--shutdown-grace-s``, stop the rest
(each client still gets a well-formed answer), and only then stop serving; the lifespan's
end then removes every process, cgroup and work directory. A second signal cuts the grace period short (running code is interrupted, then killed),
a third stops at once.

uvicorn's main loop also wakes ten times a second to see whether it should stop and once a
second to refresh its ``Date`` header. Here it wakes once a second, and at once when asked
to stop: each timer wake-up costs a virtual machine 0.1-0.4 ms of CPU, on the event loop's
own CPU, so an idle server spent ~3 ms of CPU a second on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn

log = logging.getLogger("cellbox")


class GracefulServer(uvicorn.Server):
    """A uvicorn server whose first exit signal runs ``drain`` before it stops."""

    _TICK_S = 1.0  # uvicorn's refresh of its Date header is once a second too

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Callable[[], Awaitable[None]],
        hurry: Callable[[], None],
        listening: Callable[[], None] = lambda: None,
    ) -> None:
        # (before uvicorn's __init__, which sets should_exit: the setter reads both)
        self._stop_asked: asyncio.Event | None = None  # made by main_loop, in the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        super().__init__(config)
        self._drain = drain
        self._hurry = hurry
        self._listening = listening
        self._signalled = False
        self._draining: asyncio.Task[None] | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Set by uvicorn's signal handler and by the drain: the main loop wakes at once."""
        self._should_exit = value
        if value and self._loop is not None and self._stop_asked is not None:
            self._loop.call_soon_threadsafe(self._stop_asked.set)

    async def main_loop(self) -> None:
        """uvicorn's, one tick a second (its Date header changes once a second), woken at
        once to stop."""
        self._stop_asked = asyncio.Event()
        while not await self.on_tick(0):  # 0: every tick refreshes the Date header
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_asked.wait(), self._TICK_S)

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)
        if self.started:  # the sockets are bound: connections are accepted from now on
            self._listening()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or not self.started:
            super().handle_exit(sig, frame)  # not serving yet: stop now
            return
        if self._signalled:
            log.warning("%s again: stopping the running executions now", signal.Signals(sig).name)
            self._loop.call_soon_threadsafe(self._hurry)
            super().handle_exit(sig, frame)  # uvicorn waits for their answers, then stops
            return
        self._signalled = True
        log.warning("%s: shutting down gracefully", signal.Signals(sig).name)
        # a signal handler may run in the middle of the loop's own code: hand over safely
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._draining = asyncio.create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
        except Exception:
            log.exception("draining the contexts failed")
        finally:
            self.should_exit = True
