"""A socket that a test serves from a thread of its own until ``close()``."""

from __future__ import annotations

import abc
import socket
import threading


class Serving(abc.ABC):
    """Calls :meth:`serve_once` in a loop (the socket times out every 0.2 s to look at
    ``close()``); subclasses bind ``sock`` and answer one request per call."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.serve_once()

    @abc.abstractmethod
    def serve_once(self) -> None:
        """Wait for one request (at most the socket's timeout) and answer it."""

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
