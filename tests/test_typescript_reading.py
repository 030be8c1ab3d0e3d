"""Who reads the TypeScript worker's socket: its main thread between executions, its io
thread while one runs (cellbox/workers/ts/input.mjs, io_thread.mjs). These tests drive a
worker directly over its socket, as the server does, and send what the server may send at
the moments where the reading changes hands: a request and an interrupt in one write, a
frame cut where the hand-over happens, a request while the main thread is stuck in code
between executions, executions short and long one after the other, the end of the socket."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest

from cellbox.node import node_binary
from cellbox.runtimes.typescript import WORKER
from tests import threads


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


class Worker:
    def __init__(self, node_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.sock, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [node_binary(), *node_args, str(WORKER), "--fd", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdout=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.buffer = b""
        self.next_id = 0
        assert self.frame(timeout=30)["type"] == "ready"

    def frame(self, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 4:
                (length,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) >= 4 + length:
                    body, self.buffer = self.buffer[4 : 4 + length], self.buffer[4 + length :]
                    return json.loads(body)
            left = deadline - time.monotonic()
            assert left > 0, "no frame in time"
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            assert data, "the worker closed its socket"
            self.buffer += data

    def execute(self, code: str) -> bytes:
        self.next_id += 1
        return frame({"op": "execute", "id": self.next_id, "code": code, "env": {}})

    def answer(self, timeout: float = 10) -> list[dict]:
        frames = []
        while True:
            got = self.frame(timeout)
            frames.append(got)
            if got["type"] == "done":
                return frames

    def run(self, code: str, timeout: float = 10) -> list[dict]:
        self.sock.sendall(self.execute(code))
        return self.answer(timeout)

    def close(self) -> None:
        """Hang up; the worker ends with its socket (killed if it has not within 5 s)."""
        self.sock.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def outcome(frames: list[dict]) -> str:
    for got in frames:
        if got["type"] == "result":
            return got["bundle"]["text/plain"]
        if got["type"] == "error":
            return got["name"]
    return ""


INTERRUPT = frame({"op": "interrupt"})


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


def test_a_request_and_its_interrupt_in_one_write(worker: Worker) -> None:
    # The main thread reads both; the interrupt goes to the io thread with the reading, and
    # the busy loop the request starts is stopped by it.
    worker.run("let kept = 'k'")
    worker.sock.sendall(worker.execute("for (;;) {}") + INTERRUPT)
    assert outcome(worker.answer()) == "Interrupted"
    assert outcome(worker.run("kept")) == "'k'"


def test_a_frame_cut_where_the_reading_changes_hands(worker: Worker) -> None:
    # The start of the interrupt comes with the request, its rest later: the io thread gets
    # the start with the reading, reads the rest and interrupts the execution.
    worker.sock.sendall(worker.execute("for (;;) {}") + INTERRUPT[:5])
    time.sleep(0.2)
    worker.sock.sendall(INTERRUPT[5:])
    assert outcome(worker.answer()) == "Interrupted"
    # a request cut in two while the main thread reads
    request = worker.execute("6 * 7")
    worker.sock.sendall(request[:3])
    time.sleep(0.05)
    worker.sock.sendall(request[3:10])
    time.sleep(0.05)
    worker.sock.sendall(request[10:])
    assert outcome(worker.answer()) == "42"


def test_a_request_while_the_main_thread_is_stuck_between_executions(worker: Worker) -> None:
    # A timer of an earlier cell keeps the main thread busy when the request comes: the io
    # thread has it yield the reading, reads the request and the interrupt, and stops the
    # timer's code well before it would have ended by itself.
    worker.run(
        "let kept = 1;\nsetTimeout(() => { const t = Date.now(); while (Date.now() - t < 8000) {} }, 50)"
    )
    time.sleep(0.3)
    _interrupt_a_request_behind_stuck_code(worker, within_s=4)
    assert outcome(worker.run("kept + 1")) == "2"


def _interrupt_a_request_behind_stuck_code(worker: Worker, within_s: float) -> None:
    """Send a request and, 0.3 s later, an interrupt while a timer's code keeps the main
    thread busy: both are read, and the timer's code is stopped within ``within_s``."""
    started = time.monotonic()
    worker.sock.sendall(worker.execute("kept + 1"))
    time.sleep(0.3)
    worker.sock.sendall(INTERRUPT)
    frames = worker.answer(timeout=within_s + 2)
    assert time.monotonic() - started < within_s
    assert outcome(frames) == "Interrupted"


def test_a_busy_execution_after_a_long_idle_time_is_interrupted(worker: Worker) -> None:
    # Idle for a while, the io thread looks less often; the hand-over wakes it.
    worker.run("let kept = 3")
    time.sleep(2.5)
    _a_busy_cell_is_interrupted(worker)
    assert outcome(worker.run("kept")) == "3"


def _a_busy_cell_is_interrupted(worker: Worker) -> None:
    """A cell that never yields, interrupted 0.2 s in, ends as interrupted within 2 s."""
    started = time.monotonic()
    worker.sock.sendall(worker.execute("for (;;) {}"))
    time.sleep(0.2)
    worker.sock.sendall(INTERRUPT)
    assert outcome(worker.answer()) == "Interrupted"
    assert time.monotonic() - started < 2


def test_short_and_long_executions_one_after_the_other(worker: Worker) -> None:
    # Long ones make the io thread read (and hand the reading back); short ones end before
    # it looks. Every answer is its own, in order.
    worker.run("let n = 0")
    for i in range(60):
        code = "await new Promise((r) => setTimeout(r, 25)); ++n" if i % 3 == 0 else "++n"
        assert outcome(worker.run(code)) == str(i + 1)
    # a request sent right behind the `done` of a long one
    worker.sock.sendall(worker.execute("await new Promise((r) => setTimeout(r, 40)); 'long'"))
    assert outcome(worker.answer()) == "'long'"
    worker.sock.sendall(worker.execute("'short'") + worker.execute("'next'"))
    assert outcome(worker.answer()) == "'short'"
    assert outcome(worker.answer()) == "'next'"
    # an interrupt of a cell that awaits, after the io thread has started reading
    worker.sock.sendall(worker.execute("await new Promise(() => {})"))
    time.sleep(0.1)
    worker.sock.sendall(INTERRUPT)
    assert outcome(worker.answer()) == "Interrupted"
    assert outcome(worker.run("n")) == "60"


def test_the_end_of_the_socket_ends_the_worker(worker: Worker) -> None:
    # between executions (the main thread reads the end) ...
    worker.run("1")
    worker.sock.close()
    assert worker.process.wait(timeout=5) == 0


def test_the_end_of_the_socket_ends_a_worker_stuck_in_an_execution() -> None:
    # ... and while an execution is stuck (the io thread reads it, and does not linger)
    w = Worker()
    w.sock.sendall(w.execute("for (;;) {}"))
    time.sleep(0.3)
    w.sock.close()
    try:
        w.process.wait(timeout=8)
    finally:
        if w.process.poll() is None:
            w.process.kill()
            w.process.wait()
    assert w.process.returncode is not None


def test_the_worker_reads_with_its_main_thread_between_executions(worker: Worker) -> None:
    # What the hand-over is for: short executions one after the other leave the io thread
    # asleep (it wakes at most every few milliseconds to look).
    worker.run("1")
    pid = worker.process.pid
    io = threads.named(pid, "cellbox-io")

    def switches() -> int:
        return sum(threads.switches(pid, io))

    before, started = switches(), time.monotonic()
    for _ in range(300):
        assert outcome(worker.run("1+1")) == "2"
    elapsed = time.monotonic() - started
    # 300 executions; the io thread's looks (every 10 ms) and little else
    assert switches() - before < 20 + elapsed * 300, (switches() - before, elapsed)


def test_a_worker_that_has_run_nothing_sleeps_until_its_first_execution(worker: Worker) -> None:
    # A worker waiting in the pool has run no user code, so nothing can be stuck: its io
    # thread does not look at all (the pool's workers would otherwise wake the machine
    # dozens of times a second). The first execution's hand-over wakes it: a busy first
    # cell is still interrupted.
    pid = worker.process.pid
    io = threads.named(pid, "cellbox-io")
    before = threads.switches(pid, io)[0]
    time.sleep(1.5)
    assert threads.switches(pid, io)[0] - before <= 1  # 15 at ten looks a second
    _a_busy_cell_is_interrupted(worker)
    assert outcome(worker.run("'after'")) == "'after'"


@pytest.mark.slow
def test_a_long_idle_worker_looks_once_a_second_and_still_sees_a_stuck_main_thread(
    worker: Worker,
) -> None:
    # Idle for over 30 s, the io thread looks once a second instead of ten times (a timer's
    # wake-up costs a VM 0.1-0.4 ms of CPU). A timer of the last cell that then keeps the
    # main thread busy is still seen: a request and its interrupt are read, and the timer's
    # code is stopped.
    worker.run(
        "let kept = 7;\n"
        "setTimeout(() => { const t = Date.now(); while (Date.now() - t < 15000) {} }, 36000)"
    )
    time.sleep(32)
    pid = worker.process.pid
    io = threads.named(pid, "cellbox-io")
    before = threads.switches(pid, io)[0]
    time.sleep(3)
    assert threads.switches(pid, io)[0] - before <= 6  # 30 at ten looks a second
    time.sleep(1.5)  # the timer's code runs from 36 s
    _interrupt_a_request_behind_stuck_code(worker, within_s=6)
    assert outcome(worker.run("kept + 1")) == "8"
