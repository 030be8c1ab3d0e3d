"""The worker's Outbox holds writers back past its backlog and lets them go as it sends."""

from __future__ import annotations

import socket
import threading

from cellbox.protocol import HEADER, decode, encode
from cellbox.workers.python.outbox import BACKLOG_LIMIT, STDOUT, Log, Outbox


def read_frames(sock: socket.socket, until_type: str) -> list[dict]:
    reader = sock.makefile("rb")
    frames = []
    while True:
        (size,) = HEADER.unpack(reader.read(HEADER.size))
        frame = decode(reader.read(size))
        frames.append(frame)
        if frame["type"] == until_type:
            return frames


def test_a_writer_past_the_backlog_waits_for_the_sender_and_all_arrives() -> None:
    ours, theirs = socket.socketpair()
    outbox = Outbox(theirs, Log())
    outbox.start()
    outbox.activate("x")
    chunk = "a" * (1 << 20)
    count = (BACKLOG_LIMIT >> 20) * 2  # twice the backlog: the writer must wait at times
    received: list[list[dict]] = []
    reader = threading.Thread(target=lambda: received.append(read_frames(ours, "done")))
    waits = []
    wait = outbox._space.wait
    outbox._space.wait = lambda timeout: waits.append(outbox._throttled) or wait(timeout)  # type: ignore[method-assign]
    reader.start()
    for _ in range(count):
        outbox.put_text(STDOUT, chunk)
    outbox.put_end(encode({"type": "done", "id": "x"}))
    reader.join(30)
    assert not reader.is_alive()
    (frames,) = received
    assert sum(len(f["text"]) for f in frames if f["type"] == "stdout") == count * len(chunk)
    assert frames[-1] == {"type": "done", "id": "x"}
    assert waits and set(waits) == {1}  # it did wait, counted, and was let go
    assert outbox._throttled == 0
    ours.close()
    theirs.close()
