"""The worker's incoming frames, read by one thread: interrupts become SIGINT at once,
``execute`` and ``chdir`` wait in order for the main thread."""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
from typing import Any

from cellbox.protocol import HEADER, decode
from cellbox.workers.python.outbox import Log, block_sigint


class Inbox:
    """The reader thread and the interruptible state of the code it hands out.

    An interrupt that arrives after an ``execute`` but before its code runs is kept for
    that execute (the server may interrupt the moment it has sent it): executes are
    numbered as they arrive, and an early interrupt names the last one.
    """

    def __init__(self, log: Log) -> None:
        self._log = log
        self.running = False  # the main thread runs user code: an interrupt raises there
        self._gate = threading.Lock()  # orders running, _received and _interrupt_for
        self._received = 0
        self._interrupt_for = 0
        self._requests: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()

    def start(self, sock: socket.socket) -> None:
        reader = threading.Thread(target=self._read_loop, args=(sock,), name="cellbox-reader")
        reader.daemon = True
        reader.start()

    def next(self) -> tuple[int, dict[str, Any]]:
        """The next request and its execute number (blocks until one comes)."""
        return self._requests.get()

    def enter(self, number: int) -> bool:
        """Execute ``number`` becomes interruptible; True if it was interrupted already."""
        with self._gate:
            self.running = True
            return self._interrupt_for == number

    def leave(self) -> None:
        """Not interruptible any more, even if an interrupt lands right here."""
        while True:
            try:
                self.running = False
                break
            except KeyboardInterrupt:
                pass

    def _read_loop(self, sock: socket.socket) -> None:
        block_sigint()
        main_ident = threading.main_thread().ident
        try:
            while True:
                header = _recv_exact(sock, HEADER.size)
                if header is None:
                    break
                (length,) = HEADER.unpack(header)
                payload = _recv_exact(sock, length)
                if payload is None:
                    break
                try:
                    message = decode(payload)
                except Exception as exc:
                    self._log.write(f"undecodable frame: {exc!r}")
                    continue
                op = message.get("op") if isinstance(message, dict) else None
                if op == "interrupt":
                    with self._gate:
                        if self.running and main_ident is not None:
                            signal.pthread_kill(main_ident, signal.SIGINT)
                        else:  # for the last execute, if its code has not started yet
                            self._interrupt_for = self._received
                elif op == "execute" or op == "chdir":
                    with self._gate:
                        if op == "execute":
                            self._received += 1
                        number = self._received
                    self._requests.put((number, message))  # in order, by the main thread
                else:
                    self._log.write(f"unknown message {op!r}")
        except Exception as exc:
            self._log.write(f"socket reader failed: {exc!r}")
        finally:
            os._exit(0)  # the server closed the connection: this context is over


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    if size == 0:
        return b""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        try:
            n = sock.recv_into(view[got:], size - got)
        except InterruptedError:
            continue
        if n == 0:
            return None
        got += n
    return bytes(buffer)
