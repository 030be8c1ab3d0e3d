"""The event loop's thread runs on one CPU, its home, ahead of ordinary threads there;
everything it starts runs on all CPUs, as an ordinary thread.

Every request passes through the one thread that runs the event loop. Left to the
scheduler, that thread wakes on whichever CPU is idle when a request or a worker's answer
arrives, so on a quiet machine it hops between CPUs and starts each step with caches that
hold the client's or the worker's data instead of its own. Pinned to one CPU it keeps
them warm: measured on this project's 2-CPU machine, interleaved with the same server
unpinned, warm ``1+1`` answered 7-11 % sooner and took 8-18 % less server CPU (README,
Performance).

There it also runs at real-time priority (``SCHED_FIFO`` 1, the ``realtime_loop``
setting): a request or a worker's answer never waits for a client or a worker that the
scheduler woke onto the loop's CPU a moment before. Measured on the same machine: warm
``1+1`` 0.30-0.31 ms p50 against 0.34-0.36 ms, its p99 1.3-1.8× p50 against 1.7-2.1×;
the cost is that the scheduler then wakes clients and workers on the other CPU, which a
request after a pause has to bring out of halt: ~0.1 ms more for the first ``1+1`` after
200 ms of idleness, and 0.4 ms for a new context's first cell when the client runs on the
same machine (README, Performance).

A thread or process starts with the CPU mask of the thread that starts it, so nothing the
loop starts may inherit the pin: processes are started with ``spawn`` (or inside
``unpinned()``), and thread pools take ``on_all_cpus`` as their initializer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cellbox.process import child

log = logging.getLogger("cellbox.placement")


class Placement:
    """The loop thread's home CPU, and the CPUs it had before."""

    def __init__(self) -> None:
        self.home: int | None = None  # while the loop thread is pinned
        self._all: set[int] = set()
        self._loop_thread = 0
        self._spawning = 0  # unpinned() blocks open on the loop thread
        self._realtime = False  # the loop thread runs at real-time priority

    async def start(self, realtime: bool = False) -> None:
        """Pin the event loop's thread (the caller's) to its home CPU: the one it runs on
        now, so that servers started side by side (a local cluster) spread over the CPUs.
        ``realtime``: there it also runs ahead of every ordinary thread (:func:`_realtime`).
        Nothing changes with a single CPU to run on."""
        cpus = os.sched_getaffinity(0)
        if len(cpus) < 2:
            return
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(initializer=self.on_all_cpus))
        # uvloop's libuv starts all the threads of its pool at the pool's first job (its
        # documentation says so): a name lookup starts them now, before the pin.
        with contextlib.suppress(OSError):
            await loop.getaddrinfo("localhost", None)
        home = _current_cpu(cpus)
        try:
            os.sched_setaffinity(0, (home,))
        except OSError as exc:
            log.warning("the event loop stays on all CPUs: %s", exc)
            return
        self._all, self._loop_thread, self.home = cpus, threading.get_ident(), home
        if realtime:
            self._realtime = _realtime(True)

    def stop(self) -> None:
        """Give the loop thread its CPUs back."""
        if self.home is not None and threading.get_ident() == self._loop_thread:
            _set_cpus(self._all)
            if self._realtime:
                self._realtime = not _realtime(False)
        self.home = None

    @contextlib.contextmanager
    def unpinned(self) -> Iterator[None]:
        """Processes started in this block run on all CPUs. Only the loop thread is ever
        pinned: elsewhere this changes nothing."""
        if self.home is None or threading.get_ident() != self._loop_thread:
            yield
            return
        if self._spawning == 0:
            _set_cpus(self._all)
        self._spawning += 1
        try:
            yield
        finally:
            self._spawning -= 1
            if self._spawning == 0 and self.home is not None:
                _set_cpus({self.home})

    async def spawn(self, program: str, *args: str, **options: Any) -> child.Child:
        """Start a child process (:func:`cellbox.process.child.start`) on all CPUs."""
        with self.unpinned():
            return await child.start(program, *args, **options)

    def on_all_cpus(self, then: Callable[..., Any] | None = None, *args: Any) -> None:
        """A thread pool's initializer: the thread runs on all CPUs, then ``then(*args)``."""
        if self.home is not None:
            _set_cpus(self._all)
        if then is not None:
            then(*args)


def _set_cpus(cpus: set[int]) -> None:
    """The calling thread's CPUs; a placement that fails (a CPU taken away meanwhile) leaves
    the thread where it is rather than fail the work it was set for."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        log.warning("could not set the CPUs %s of a thread: %s", sorted(cpus), exc)


def _realtime(on: bool) -> bool:
    """The calling thread runs ahead of every ordinary thread on its CPUs (``SCHED_FIFO``
    at the lowest real-time priority, 1), or as one of them again; True if done.

    A request or a worker's answer then runs the loop thread at once, never after a
    client or a worker that the scheduler woke onto its CPU a moment before. Threads and
    processes it starts are ordinary (``SCHED_RESET_ON_FORK``). Should the loop ever
    spin, the kernel still leaves its CPU to the others for part of each second
    (``sched_rt_runtime_us``). Refused without the right (``CAP_SYS_NICE``, or a cgroup
    given no real-time time): the loop then stays an ordinary thread."""
    policy, priority = (os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 1) if on else (os.SCHED_OTHER, 0)
    try:
        os.sched_setscheduler(0, policy, os.sched_param(priority))
    except OSError as exc:
        log.warning(
            "the event loop %s real-time priority: %s", "gets no" if on else "keeps its", exc
        )
        return False
    return True


def _current_cpu(cpus: set[int]) -> int:
    """The CPU the calling thread runs on (the last of ``cpus`` if libc cannot tell)."""
    with contextlib.suppress(OSError, AttributeError):
        cpu = ctypes.CDLL(None, use_errno=True).sched_getcpu()
        if cpu in cpus:
            return int(cpu)
    return max(cpus)


placement = Placement()  # the server's: one event loop thread per process
