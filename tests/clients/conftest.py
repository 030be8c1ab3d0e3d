"""Fixtures of the client tests: SDK clients of the session's server, and broken servers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from cellbox.client import Client


@pytest.fixture
def sdk(server) -> Iterator[Client]:
    with Client(server.url, server.token) as client:
        yield client


def read_request(conn: socket.socket) -> None:
    """Read one whole request (head and Content-Length body): closing with unread bytes would
    make the kernel answer with a reset instead of the clean end the test means."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


@pytest.fixture
def misbehaving() -> Iterator[Callable[[bytes | None], str]]:
    """A loopback server that reads a request, then answers ``reply`` (None: never) and hangs
    up; each connection alike (a call may make more than one request, e.g. ``GET /info``)."""
    listeners: list[socket.socket] = []

    def start(reply: bytes | None) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def answer(conn: socket.socket) -> None:
            with conn:
                read_request(conn)
                if reply is None:
                    conn.recv(65536)  # wait for the client to give up
                else:
                    conn.sendall(reply)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in listeners:
        listener.close()
