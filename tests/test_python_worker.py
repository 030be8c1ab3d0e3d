"""The Python worker process alone, over its protocol socket (no server, no sandbox)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cellbox.protocol import HEADER, decode, encode


class Worker:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cellbox.workers.python", "--fd", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
        theirs.close()
        ours.settimeout(20)
        self.sock = ours
        self.reader = ours.makefile("rb")
        assert self.read()["type"] == "ready"

    def read(self) -> dict:
        (size,) = HEADER.unpack(self.reader.read(HEADER.size))
        return decode(self.reader.read(size))

    def until_done(self) -> list[dict]:
        frames = []
        while (frame := self.read())["type"] != "done":
            frames.append(frame)
        return frames

    def close(self) -> None:
        self.reader.close()
        self.sock.close()
        self.process.wait(10)


@pytest.fixture
def worker() -> Iterator[Worker]:
    started = Worker()
    yield started
    started.close()


def test_an_interrupt_right_behind_the_execute_stops_the_code(worker: Worker):
    # The server interrupts the moment a stop was asked for, which can be before the
    # worker's main thread has begun the code: the interrupt must not be lost.
    worker.sock.sendall(encode({"op": "execute", "code": "x = 1", "env": {}}))
    assert worker.until_done() == []
    for _ in range(3):
        execute = encode({"op": "execute", "code": "import time\ntime.sleep(30)", "env": {}})
        worker.sock.sendall(execute + encode({"op": "interrupt"}))
        frames = worker.until_done()  # the socket's 20 s timeout fails a lost interrupt
        assert [f["type"] for f in frames] == ["error"], frames
        assert frames[0]["name"] == "KeyboardInterrupt"
    worker.sock.sendall(encode({"op": "execute", "code": "x", "env": {}}))
    assert worker.until_done() == [{"type": "result", "bundle": {"text/plain": "1"}}]


def test_an_interrupt_while_idle_does_not_reach_the_next_cell(worker: Worker):
    worker.sock.sendall(encode({"op": "interrupt"}))
    worker.sock.sendall(encode({"op": "execute", "code": "41 + 1", "env": {}}))
    assert worker.until_done() == [{"type": "result", "bundle": {"text/plain": "42"}}]
