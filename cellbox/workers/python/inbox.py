"""The worker's incoming frames: ``execute`` and ``chdir`` in order for the main thread, and
an ``interrupt`` as SIGINT for the main thread the moment it arrives.

Between executions the main thread reads the socket itself, so a request reaches the code
that runs it without a hand-off between threads (a wake-up that cost more than the rest of
the read). While user code runs, a watcher thread reads it instead: the socket is in the
watcher's epoll set all along, but asks for input only while code runs, so the watcher
sleeps through every request and wakes only for what comes during an execution (an
interrupt) or for the server hanging up.

The main thread waits for a request in ``poll``, not in ``recv``: a thread asleep in a
Unix socket's ``recv`` is woken whenever the kernel signals the socket writable, which
it does each time the server reads what the worker sent (its answer, so once per
execution), and that wake-up finds nothing to read. ``poll`` asked for input only sleeps
through those.

A signal can land after the main thread last looked for one and before it enters a
blocking call (``time.sleep`` just starting): Python's handler then runs only when that
call returns, maybe never. So an interrupt is signalled again every ``_RESEND_S`` until
its handler has run (:meth:`Inbox.heard`) or the code is done.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
from collections import deque
from typing import Any

from cellbox.protocol import HEADER, decode
from cellbox.workers.python.outbox import Log, block_sigint

_READ_SIZE = 1 << 16
_HANGUP = select.EPOLLHUP | select.EPOLLERR  # always reported, even while not asked for input
_RESEND_S = 0.05


class Inbox:
    """The socket's frames and the interruptible state of the code they ask for.

    An interrupt that arrives after an ``execute`` but before its code runs is kept for
    that execute (the server may interrupt the moment it has sent it): executes are
    numbered as they arrive, and an early interrupt names the last one.

    The main thread reads the socket while ``running`` is False; the watcher reads it
    only while ``running`` is True, and ``_lock`` orders the switches with its reads.
    """

    def __init__(self, log: Log) -> None:
        self._log = log
        self.running = False  # the main thread runs user code: an interrupt raises there
        self._unheard = False  # an interrupt was signalled; the main thread's handler has not run
        self._lock = threading.Lock()  # orders running, the watcher's reads and the gate
        self._received = 0
        self._interrupt_for = 0
        self._requests: deque[tuple[int, dict[str, Any]]] = deque()
        self._buffer = bytearray()
        self._sock: socket.socket | None = None
        self._epoll: select.epoll | None = None  # made in start(): a zygote must not share it
        self._input = select.poll()  # the main thread's wait for a request
        self._main = 0

    def start(self, sock: socket.socket) -> None:
        """Serve ``sock`` from now on (called on the main thread)."""
        self._sock = sock
        self._main = threading.get_ident()
        self._epoll = select.epoll()
        self._epoll.register(sock.fileno(), 0)
        self._input.register(sock.fileno(), select.POLLIN)
        watcher = threading.Thread(target=self._watch, name="cellbox-inbox", daemon=True)
        watcher.start()

    def next(self) -> tuple[int, dict[str, Any]]:
        """The next request and its execute number (blocks until one comes)."""
        while not self._requests:
            self._read(blocking=True)
        return self._requests.popleft()

    def enter(self, number: int) -> bool:
        """Execute ``number`` becomes interruptible; True if it was interrupted already."""
        with self._lock:
            self.running = True
            self._ask_for_input(True)
            return self._interrupt_for == number

    def leave(self) -> None:
        """Not interruptible any more, even if an interrupt lands right here."""
        while True:
            try:
                with self._lock:
                    self.running = False
                    self._unheard = False
                    self._ask_for_input(False)
                break
            except KeyboardInterrupt:
                pass

    # -- reading ------------------------------------------------------------------------

    def heard(self) -> None:
        """The main thread's SIGINT handler ran (called from it: no lock, it may hold it)."""
        self._unheard = False

    def _ask_for_input(self, on: bool) -> None:
        assert self._epoll is not None and self._sock is not None  # start() came first
        self._epoll.modify(self._sock.fileno(), select.EPOLLIN if on else 0)

    def _watch(self) -> None:
        block_sigint()
        assert self._epoll is not None
        while True:
            # EINTR is retried by Python (PEP 475)
            events = self._epoll.poll(_RESEND_S if self._unheard else -1)
            for _fd, mask in events:
                if mask & _HANGUP:
                    os._exit(0)  # the server closed the connection: this context is over
                with self._lock:
                    if self.running:  # else the main thread reads it
                        self._read(blocking=False)
            if not events:
                with self._lock:
                    if self._unheard and self.running:
                        self._signal()  # its handler has not run: the signal came too early
                    else:
                        self._unheard = False

    def _read(self, *, blocking: bool) -> None:
        """Read what the socket has (at least one chunk if ``blocking``); take its frames."""
        assert self._sock is not None
        buffer = self._buffer
        flags = 0 if blocking else socket.MSG_DONTWAIT
        if blocking:
            self._input.poll()  # (see the module's docstring); EINTR is retried (PEP 475)
        while True:
            try:
                data = self._sock.recv(_READ_SIZE, flags)
            except BlockingIOError:
                break
            except OSError as exc:
                self._log.write(f"socket read failed: {exc!r}")
                os._exit(0)
            if not data:
                os._exit(0)  # the server closed the connection: this context is over
            buffer += data
            if blocking:
                break
        while len(buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer)
            end = HEADER.size + length
            if len(buffer) < end:
                break
            payload = bytes(buffer[HEADER.size : end])
            del buffer[:end]
            self._take(payload)

    def _take(self, payload: bytes) -> None:
        try:
            message = decode(payload)
        except Exception as exc:
            self._log.write(f"undecodable frame: {exc!r}")
            return
        op = message.get("op") if isinstance(message, dict) else None
        if op == "interrupt":
            if self.running:
                self._signal()
            else:  # for the last execute, if its code has not started yet
                self._interrupt_for = self._received
        elif op == "execute" or op == "chdir":
            if op == "execute":
                self._received += 1
            self._requests.append((self._received, message))
        else:
            self._log.write(f"unknown message {op!r}")

    def _signal(self) -> None:
        self._unheard = True
        signal.pthread_kill(self._main, signal.SIGINT)
