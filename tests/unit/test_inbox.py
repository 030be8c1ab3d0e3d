"""The Python worker's inbox: how its main thread waits for the next request."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cellbox.protocol import encode
from cellbox.workers.python.inbox import Inbox
from cellbox.workers.python.outbox import Log
from tests import threads


def _wait_until_asleep(thread_id: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/self/task/{thread_id}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "S":
                return
        time.sleep(0.01)
    raise AssertionError("the reader never went to sleep")


def waiting_through_answers_read() -> None:
    """Run in a process of its own (the inbox's watcher ends its process when the socket
    closes): a thread waits in ``Inbox.next`` while the server reads 20 answers of the
    worker, then a request comes. Prints what the waiting thread saw, as JSON."""
    worker_end, server_end = socket.socketpair()
    inbox = Inbox(Log())
    taken: list[tuple[int, dict]] = []
    ready = threading.Event()
    reader_id: list[int] = []

    def main_thread() -> None:
        reader_id.append(threading.get_native_id())
        inbox.start(worker_end)
        ready.set()
        taken.append(inbox.next())

    reader = threading.Thread(target=main_thread, daemon=True)
    reader.start()
    try:
        assert ready.wait(5)
        _wait_until_asleep(reader_id[0])
        before = threads.switches(os.getpid(), reader_id[0])[0]
        for _ in range(20):  # the worker's answers, read by the server
            worker_end.sendall(b"answer")
            assert server_end.recv(64) == b"answer"
        time.sleep(0.05)
        woken = threads.switches(os.getpid(), reader_id[0])[0] - before
        taken_early = list(taken)
        server_end.sendall(encode({"op": "execute", "id": 7, "code": "1+1"}))
        reader.join(5)
        seen = {"woken": woken, "taken_early": taken_early, "taken": taken}
        sys.stdout.write(json.dumps(seen) + "\n")
        sys.stdout.flush()
    finally:
        server_end.close()  # the watcher then ends this process


def test_a_waiting_worker_sleeps_while_the_server_reads_its_answers() -> None:
    """The server reading what the worker sent makes the kernel signal the worker's socket
    writable. A main thread asleep in ``recv`` would wake for that (and find nothing to
    read) once per execution; waiting in ``poll`` it sleeps on until a request comes."""
    root = Path(__file__).resolve().parents[2]
    script = "from tests.unit.test_inbox import waiting_through_answers_read as w; w()"
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert run.stdout, run.stderr
    seen = json.loads(run.stdout.splitlines()[0])
    assert seen["woken"] == 0, "the waiting thread was woken by the answers being read"
    assert seen["taken_early"] == []
    assert seen["taken"] == [[1, {"op": "execute", "id": 7, "code": "1+1"}]]
