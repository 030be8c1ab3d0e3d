"""One execution on one context: drives the worker and produces the event stream.

It knows its context only through :class:`Session` and the worker only through
:class:`WorkerLink`; its limits are passed in (:class:`ExecutionLimits`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from cellbox import deaths, metrics
from cellbox.deaths import Death
from cellbox.events import ItemCap, OutputLines, bundle_to_item, error_event
from cellbox.fifo import Fifo
from cellbox.protocol import ITEM_KINDS
from cellbox.runtimes import Runtime

log = logging.getLogger("cellbox.execution")


# The smallest limit on one frame from a worker: its largest stdout/stderr frame (1 Mi
# characters, at most ~6 MiB of JSON) always fits.
MIN_FRAME_LIMIT = 16 << 20


@dataclass(frozen=True)
class ExecutionLimits:
    timeout_ms: int
    output_cap_bytes: int  # stdout+stderr kept (UTF-8 bytes)
    items_cap_bytes: int  # rich items kept (their JSON from the worker)
    interrupt_grace_s: float  # between an interrupt and the kill
    shutdown_grace_s: float  # what accepted code gets to finish when the server stops


class WorkerLink(Protocol):
    """What an execution needs of a worker: its frames, a way to send and wake, its end."""

    frames: Fifo[dict[str, Any] | None]

    @property
    def pid(self) -> int: ...

    def limit_frames(self, limit: int) -> None: ...

    def send(self, message: dict[str, Any]) -> None: ...

    def interrupt(self) -> None: ...

    def wake(self) -> None: ...

    async def death(self) -> Death: ...


class Session(Protocol):
    """What an execution needs of its context."""

    id: str
    runtime: Runtime
    lock: asyncio.Lock
    closed: bool
    running: Execution | None
    execution_count: int
    untold: tuple[Death, str] | None  # a loss of state no client has heard of yet
    telling: asyncio.Future[None] | None  # the answer that tells of ``untold`` is on its way

    def touch(self) -> None: ...

    async def lost_process(self) -> tuple[Death, str] | None: ...

    async def ready_worker(self) -> Any: ...

    async def discard_worker(self, worker: Any) -> None: ...


_STUBBORN = Death(deaths.STUBBORN, "was killed: the code ignored its interrupt")
_ids = itertools.count(1)  # of executions sent to workers, echoed on their frames


# When a loss of state happened that no client was told of (see ``Context.untold``).
WHILE_IDLE = "while it was idle"
UNSEEN = "while it ran code for a client that had gone away"


def _died_untold(death: Death, when: str) -> dict[str, Any]:
    return error_event(
        "ContextDied",
        death.told(
            f"the context's process {death.reason} {when}: its state (variables, imports, "
            "definitions) was lost and this code was NOT run. The next execution runs on a "
            "fresh process (execution_count starts again at 1)"
        ),
    )


class ContextGone(Exception):
    """The context was deleted before this execution got its turn."""


SHUTTING_DOWN = "the server is shutting down"


class ShuttingDown(RuntimeError):
    """The server is shutting down: no new work (503)."""


# Why an execution is being stopped from outside.
TIMEOUT, INTERRUPT, DISCONNECT, DELETED, RESTARTED, SHUTDOWN = (
    "timeout",
    "interrupt",
    "disconnect",
    "deleted",
    "restarted",
    "shutdown",
)
_STOPPED_BY_US = (TIMEOUT, SHUTDOWN)  # the interrupt's error is renamed after the reason


class Execution:
    """Runs once the context is free (FIFO); its events are read with :meth:`events`."""

    def __init__(
        self,
        context: Session,
        code: str,
        env: dict[str, str],
        limits: ExecutionLimits,
        *,
        numbered: bool = True,
    ) -> None:
        self.context = context
        self.code = code
        self.env = env
        self.numbered = numbered  # False: the server's own code, kept out of the cell history
        self.limits = limits
        self.timeout_ms = limits.timeout_ms
        # asyncio.get_running_loop() costs a getpid() system call in CPython 3.11: asked once
        self._loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = self._loop.create_future()
        self.stop_reason: str | None = None
        self.lost: Death | None = None  # the context's state was lost during this execution
        self.client_left = False
        self._untold: tuple[Death, str] | None = None  # the loss this execution tells of
        self._answered: asyncio.Future[None] | None = None
        self.execution_count = 0
        self.error_name: str | None = None
        self._began = time.perf_counter()  # then its turn, then its code sent to the worker
        self._id = 0  # the id its frames carry, once sent to a worker
        self._ended = False  # its ``exit`` event is queued: its answer is complete
        self._queue: Fifo[list[dict[str, Any]]] = Fifo()
        self._worker: WorkerLink | None = None
        self._kill_timer: asyncio.TimerHandle | None = None
        self._must_kill = False
        self.task = self._loop.create_task(self._run())

    async def batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The events of this execution in order, in batches; the last one ends with ``exit``."""
        while True:
            batch = await self._queue.get()
            yield batch
            if batch[-1]["type"] == "exit":
                return

    def queued(self) -> list[list[dict[str, Any]]]:
        """The batches not read yet, without waiting (all of them once ``task`` is done)."""
        batches = []
        while not self._queue.empty():
            batches.append(self._queue.get_nowait())
        return batches

    def stop(self, reason: str) -> None:
        """Ask the running code to stop: interrupt now, kill after the grace period."""
        if reason == DISCONNECT:
            self.client_left = True
        if self.stop_reason is None or reason in (DELETED, RESTARTED):
            self.stop_reason = reason
        worker = self._worker
        if worker is None:
            return  # not running yet: ``_follow`` applies the reason when it starts
        if reason in (INTERRUPT, DISCONNECT, TIMEOUT, SHUTDOWN):
            worker.interrupt()
            if self._kill_timer is None:
                grace = self.limits.interrupt_grace_s
                self._kill_timer = self._loop.call_later(grace, self._kill_due)
        worker.wake()

    def _kill_due(self) -> None:
        self._must_kill = True
        if self._worker is not None:
            self._worker.wake()

    def _emit(self, event: dict[str, Any]) -> None:
        if event["type"] == "error":
            self.error_name = event["name"]
        self._queue.put_nowait([event])

    def _emit_all(self, events: list[dict[str, Any]]) -> None:
        if events:
            self._queue.put_nowait(events)

    async def _run(self) -> None:
        context = self.context
        try:
            async with context.lock:
                if context.closed:
                    raise ContextGone(context.id)
                if self.stop_reason == SHUTDOWN:  # its turn came after the shutdown grace
                    raise ShuttingDown(f"{SHUTTING_DOWN}; the code was not run")
                self._began = time.perf_counter()
                if self.stop_reason == DISCONNECT:  # the client left while it waited
                    self.started.set_result(None)
                    self._emit(error_event("Disconnected", "the client went away; not run"))
                    self._end(failed=True)
                    return
                context.running = self
                try:
                    await self._execute(context)
                finally:
                    context.running = None
                    context.touch()
        except (ContextGone, ShuttingDown) as exc:
            if not self.started.done():
                self.started.set_exception(exc)
        except Exception as exc:  # a bug of ours must not leave the caller waiting
            log.exception("execution on %s failed", context.id)
            if not self.started.done():
                self.started.set_result(None)
            if not self._ended:
                self._emit(error_event("InternalError", f"cellbox failed to run the code: {exc}"))
                self._end(failed=True)

    async def _execute(self, context: Session) -> None:
        untold = await context.lost_process()
        if untold is not None:  # never run code on a silently fresh process
            self._tell_loss(untold[0])
            # The process was replaced, so the count has started again at 1 (the contract
            # has no 0); this code was not run, so the first one that runs counts 1 as well.
            self.execution_count = 1
            self.started.set_result(None)
            self._emit(_died_untold(*untold))
            self._end(failed=True)
            return
        try:
            worker: WorkerLink = await context.ready_worker()
        except Exception as exc:
            self.started.set_result(None)
            self._emit(error_event("WorkerStartError", f"could not start the context: {exc}"))
            self._end(failed=True)
            return
        context.execution_count += 1
        self.execution_count = context.execution_count
        self.started.set_result(None)
        self._worker = worker
        # A frame longer than any kept item can be is never buffered by the server.
        worker.limit_frames(max(self.limits.items_cap_bytes, MIN_FRAME_LIMIT))
        self._began = time.perf_counter()
        self._id = next(_ids)
        count = self.execution_count if self.numbered else 0
        worker.send(
            {"op": "execute", "id": self._id, "code": self.code, "env": self.env, "count": count}
        )
        failed = await self._follow(context, worker)
        self._worker = None
        self._end(failed)

    async def _follow(self, context: Session, worker: WorkerLink) -> bool:
        """Forward the worker's frames until ``done``; True if the execution failed.

        Timers (the deadline, the kill after an ignored interrupt) and stop requests all
        arrive as ``wake`` markers in the same frame queue, so this is the only loop.
        """
        lines = OutputLines(self.limits.output_cap_bytes)
        items = ItemCap(self.limits.items_cap_bytes)
        deadline = self._loop.call_later(self.timeout_ms / 1000, self.stop, TIMEOUT)
        failed = False
        strays = 0
        if self.stop_reason is not None:  # stopped while it waited for its turn
            self.stop(self.stop_reason)
        try:
            while True:
                frame = await worker.frames.get()
                if frame is None:
                    self._flush(lines, items)
                    self._emit(await self._lost_error(context, worker))
                    return True
                kind = frame["type"]
                if kind == "wake":
                    if self._must_kill:
                        deaths.record(context.runtime.name, _STUBBORN, context.id, worker.pid)
                        self._tell_loss(_STUBBORN)
                        await context.discard_worker(worker)
                        self._flush(lines, items)
                        self._emit(self._stubborn_error())
                        return True
                elif frame.get("id") != self._id and kind != "oversized":  # (told unread)
                    # Only a ``done`` written by the code itself ends an execution before
                    # its worker does: what the worker still sends for that one is not ours.
                    strays += 1
                    if strays == 1:
                        log.warning("%s: dropped a frame of another execution", context.id)
                elif kind in ("stdout", "stderr"):
                    self._emit_all(lines.feed(kind, frame["text"]))
                elif kind in ITEM_KINDS:
                    if items.admit(frame["bytes"]):
                        item = bundle_to_item(frame["bundle"], primary=kind == "result")
                        self._emit({"type": "result", "data": item})
                elif kind == "oversized":
                    failed = self._oversized(frame, lines, items) or failed
                elif kind == "error":
                    failed = True
                    self._emit(self._user_error(frame))
                elif kind == "done":
                    self._flush(lines, items)
                    return failed
        finally:
            deadline.cancel()
            if self._kill_timer is not None:
                self._kill_timer.cancel()

    def _flush(self, lines: OutputLines, items: ItemCap) -> None:
        self._emit_all(lines.finish() + items.finish())

    def _oversized(self, frame: dict[str, Any], lines: OutputLines, items: ItemCap) -> bool:
        """A frame too long to be read was skipped: count it as what it was. True if it was
        the execution's error (which is then told without its text)."""
        # Made by the server's frame reader from the frame's length (``decode_worker_frame``
        # refuses an "oversized" frame from the worker itself).
        kind, size = frame["kind"], frame["bytes"]
        if kind in ITEM_KINDS:
            items.admit(size)
        elif kind in ("stdout", "stderr"):
            lines.drop(size)
        elif kind == "error":
            self._emit(
                error_event(
                    "ErrorTooLarge",
                    f"the code failed with an error of {size} bytes, too large to be sent "
                    "back; it was dropped",
                )
            )
            return True
        return False

    def _user_error(self, frame: dict[str, Any]) -> dict[str, Any]:
        name = str(frame.get("name") or "Error")
        value = str(frame.get("value") or "")
        traceback = str(frame.get("traceback") or "")
        if self.stop_reason in _STOPPED_BY_US and name == self.context.runtime.interrupted_error:
            return error_event(*self._stopped_error(), traceback)
        return error_event(name, value, traceback)

    def _stopped_error(self) -> tuple[str, str]:
        """Name and value of the error of an execution stopped for a timeout or shutdown."""
        if self.stop_reason == SHUTDOWN:
            grace = self.limits.shutdown_grace_s
            return "ServerShutdown", (
                f"the server is shutting down: the code was interrupted after the {grace:g} s "
                "it had to finish"
            )
        return "TimeoutError", f"execution timed out after {self.timeout_ms} ms"

    def _stubborn_error(self) -> dict[str, Any]:
        grace = self.limits.interrupt_grace_s
        lost = (
            f"the code did not stop within {grace:g} s of being interrupted, so the context's "
            "process was killed and restarted; its state was lost"
        )
        if self.stop_reason in _STOPPED_BY_US:
            name, value = self._stopped_error()
            return error_event(name, f"{value}; {lost}")
        return error_event(self.context.runtime.interrupted_error, f"interrupted; {lost}")

    async def _lost_error(self, context: Session, worker: WorkerLink) -> dict[str, Any]:
        if self.stop_reason == DELETED:
            return error_event("ContextDeleted", "the context was deleted while the code ran")
        if self.stop_reason == RESTARTED:
            return error_event(
                "ContextRestarted", "the context was restarted while the code ran; state cleared"
            )
        death = await worker.death()
        self._tell_loss(death)
        await context.discard_worker(worker)
        return error_event(
            "ContextDied",
            death.told(
                f"the context's process {death.reason} before this code finished (it may "
                "not have started): its state was lost; the next execution starts on a fresh "
                "process"
            ),
        )

    def _tell_loss(self, death: Death) -> None:
        """This execution tells of a loss of state. Until its answer is known to have
        reached its client (:meth:`answered`) the loss counts as untold: the next execution
        waits a moment for that answer, and tells of the loss itself if it is not heard."""
        self.lost = death
        self._untold = self.context.untold = (death, UNSEEN)
        self._answered = self.context.telling = asyncio.get_running_loop().create_future()

    def answered(self, whole: bool) -> None:
        """The endpoint is done with this execution's answer (called once, whatever
        happened): ``whole`` if all of it was sent. A loss it told is heard if so and the
        client was not seen leaving."""
        if whole and not self.client_left and self.context.untold is self._untold:
            self.context.untold = None  # heard
        if self._answered is not None and not self._answered.done():
            self._answered.set_result(None)

    def _end(self, failed: bool) -> None:
        """Queue the ``exit`` event that completes the answer, and count the execution:
        every answered execution passes here once, whatever path it took."""
        self._ended = True
        outcome = metrics.outcome_of(failed, self.stop_reason, self.error_name)
        seconds = time.perf_counter() - self._began
        metrics.execution_finished(self.context.runtime.name, outcome, seconds)
        self._queue.put_nowait([self._exit_event(failed)])

    def _exit_event(self, failed: bool) -> dict[str, Any]:
        return {
            "type": "exit",
            "code": 1 if failed else 0,
            "context_id": self.context.id,
            "execution_count": self.execution_count,
        }
