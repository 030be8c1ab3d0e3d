"""The Python worker process alone, over its protocol socket (no server, no sandbox)."""

from __future__ import annotations

import json
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
        """The next frame, without the execution id it echoes (None: none was sent)."""
        (size,) = HEADER.unpack(self.reader.read(HEADER.size))
        frame = decode(self.reader.read(size))
        assert frame.pop("id", None) is None, frame
        return frame

    def printed_line(self) -> str:
        """The text of the stdout frames up to the end of a line: a ``print`` is two
        writes, which the sender may send as two frames when it wakes between them."""
        text = ""
        while not text.endswith("\n"):
            frame = self.read()
            assert frame["type"] == "stdout", frame
            text += frame["text"]
        return text

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


def test_an_interrupt_reaches_code_that_is_running(worker: Worker):
    # Between executions the main thread reads the socket; while code runs, the inbox's
    # watcher does: a blocking call and a busy loop both stop.
    for code in ("import time\nprint('go')\ntime.sleep(30)", "print('go')\nwhile True: pass"):
        worker.sock.sendall(encode({"op": "execute", "code": code, "env": {}}))
        assert worker.printed_line() == "go\n"
        worker.sock.sendall(encode({"op": "interrupt"}))
        frames = worker.until_done()
        assert [f["name"] for f in frames if f["type"] == "error"] == ["KeyboardInterrupt"]
    worker.sock.sendall(encode({"op": "execute", "code": "6 * 7", "env": {}}))
    assert worker.until_done() == [{"type": "result", "bundle": {"text/plain": "42"}}]


def test_an_interrupt_whose_signal_python_missed_is_signalled_again(worker: Worker):
    # A SIGINT that lands just before a blocking call begins (``time.sleep`` starting) is
    # seen by Python only when that call returns. ``sigwait`` stands for that moment: it
    # takes the signal and no handler runs. The worker signals again until one has run.
    code = (
        "import signal, time\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n"
        "print('go')\n"
        "signal.sigwait({signal.SIGINT})\n"
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})\n"
        "time.sleep(30)"
    )
    worker.sock.sendall(encode({"op": "execute", "code": code, "env": {}}))
    assert worker.printed_line() == "go\n"
    worker.sock.sendall(encode({"op": "interrupt"}))
    frames = worker.until_done()  # the socket's 20 s timeout fails a lost interrupt
    assert [f["name"] for f in frames if f["type"] == "error"] == ["KeyboardInterrupt"]


def test_interrupts_at_any_moment_lose_no_request(worker: Worker):
    # Interrupts land before, during and after short cells, so every hand-over of the
    # socket between the main thread and the watcher is crossed; each cell still answers
    # once, in order, and the state they share stays whole.
    worker.sock.sendall(encode({"op": "execute", "code": "n = 0", "env": {}}))
    assert worker.until_done() == []
    finished = 0
    for round_ in range(150):
        code = f"n += 1\nfor _ in range({round_ % 5 * 2000}): pass\nn"
        worker.sock.sendall(encode({"op": "execute", "code": code, "env": {}}))
        if round_ % 3:
            worker.sock.sendall(encode({"op": "interrupt"}))
        frames = worker.until_done()
        kinds = [f["type"] for f in frames]
        assert kinds in (["result"], ["error"]), frames
        finished += kinds == ["result"]
    worker.sock.sendall(encode({"op": "execute", "code": "n", "env": {}}))
    (result,) = worker.until_done()
    assert 50 <= finished <= int(result["bundle"]["text/plain"]) <= 150


def test_a_request_split_over_many_reads_arrives_whole(worker: Worker):
    code = "s = %r\nlen(s)" % ("x" * 300_000)  # several times one read of the socket
    frame = encode({"op": "execute", "code": code, "env": {}})
    worker.sock.sendall(frame[:3])  # not even a whole length header
    for start in range(3, len(frame), 100_000):
        worker.sock.sendall(frame[start : start + 100_000])
    assert worker.until_done() == [{"type": "result", "bundle": {"text/plain": "300000"}}]


def test_the_worker_ends_when_the_server_hangs_up_during_code(worker: Worker):
    # The main thread is held by user code (which never reads the socket); the watcher
    # sees the hang-up and ends the process.
    worker.sock.sendall(
        encode({"op": "execute", "code": "print('go')\nwhile True: pass", "env": {}})
    )
    assert worker.printed_line() == "go\n"
    worker.reader.close()
    worker.sock.close()
    assert worker.process.wait(10) == 0


def test_cells_take_the_number_the_server_gives(worker: Worker):
    # ``count`` numbers the cell (_N, Out[N], In[N]) whatever happened before: a cell the
    # interrupt stopped before it began still took its number; count 0 is the server's own
    # code, kept out of the history.
    def execute(code: str, count: int) -> list[dict]:
        worker.sock.sendall(encode({"op": "execute", "code": code, "env": {}, "count": count}))
        return worker.until_done()

    assert execute("hidden = 'installed'", 0) == []
    assert execute("6 * 7", 1) == [{"type": "result", "bundle": {"text/plain": "42"}}]
    sleep = encode({"op": "execute", "code": "import time\ntime.sleep(30)", "env": {}, "count": 2})
    worker.sock.sendall(sleep + encode({"op": "interrupt"}))
    assert [frame["type"] for frame in worker.until_done()] == ["error"]
    assert execute("'x'", 3) == [{"type": "result", "bundle": {"text/plain": "'x'"}}]
    frames = execute("sorted(Out), _1, _3, In[1], In[3], len(In), hidden", 4)
    text = "([1, 3], 42, 'x', '6 * 7', \"'x'\", 5, 'installed')"
    assert frames == [{"type": "result", "bundle": {"text/plain": text}}]


def test_the_output_cache_is_ipythons(worker: Worker):
    # The same cells in a stock IPython shell and in the worker leave the same Out, _N and
    # _, __, ___, also past 1000 values, where both drop the oldest fifth.
    cells = [f"{n}" if n % 7 else f"{n};" for n in range(1, 1206)]
    cells[100:103] = ["None", "x = 5", "1/0"]
    probe = (
        "repr((sorted(Out.items()), "
        "sorted(k for k in globals() if k[:1] == '_' and k[1:].isdigit()), _, __, ___))"
    )
    stock = (
        "import json, sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "sys.stdout = open('/dev/null', 'w')\n"
        "for cell in json.loads(sys.argv[1]):\n"
        "    shell.run_cell(cell, store_history=True)\n"
        f"sys.__stdout__.write(eval({probe!r}, shell.user_ns))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", stock, json.dumps(cells)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for count, cell in enumerate(cells, 1):
        worker.sock.sendall(encode({"op": "execute", "code": cell, "env": {}, "count": count}))
        worker.until_done()
    last = {"op": "execute", "code": f"print({probe})", "env": {}, "count": len(cells) + 1}
    worker.sock.sendall(encode(last))
    printed = "".join(f["text"] for f in worker.until_done() if f["type"] == "stdout")
    assert printed == done.stdout + "\n"
    assert "(1205, 1205)" in printed and "(1, 1)" not in printed and "(7, 7)" not in printed
