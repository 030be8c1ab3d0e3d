"""An interrupt's termination that lands in the TypeScript worker's own code at the end of
an execution (cellbox/workers/ts/output.mjs, io_thread.mjs): the execution still ends with
`Interrupted` and the context keeps its state, and no frame is cut. The termination is made
to land where it used to do harm by modules preloaded into the worker (tests/ts_faults):
where the execution is marked finished and its ending frames are not written yet (which
lost the `done`), and right after the socket took part of a long ending (which cut a
frame)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.test_typescript_reading import INTERRUPT, Worker, outcome

FAULT = Path(__file__).resolve().parent / "ts_faults" / "terminate_ending.cjs"


def test_a_termination_before_the_ending_is_written_still_ends_the_execution() -> None:
    env = {**os.environ, "CELLBOX_TEST_TERMINATE_ENDING_OF": "2"}
    worker = Worker(node_args=("--require", str(FAULT)), env=env)
    try:
        assert outcome(worker.run("let kept = 'k'")) == ""
        worker.sock.sendall(worker.execute("await new Promise(() => {})"))
        time.sleep(0.2)
        worker.sock.sendall(INTERRUPT)
        frames = worker.answer(timeout=5)
        assert outcome(frames) == "Interrupted", frames
        assert [f["type"] for f in frames].count("done") == 1
        assert outcome(worker.run("kept")) == "'k'"
        # the ending of later executions is untouched
        assert outcome(worker.run("6 * 7")) == "42"
    finally:
        worker.close()


HALF_WRITTEN = Path(__file__).resolve().parent / "ts_faults" / "half_written_ending.cjs"


def test_a_termination_after_part_of_a_large_ending_is_written_cuts_no_frame() -> None:
    worker = Worker(node_args=("--require", str(HALF_WRITTEN)))
    try:
        assert outcome(worker.run("let kept = 'k'")) == ""
        # An error of 40 KB: its frame is part of the ending (with `done`), which is then
        # longer than what a stream socket takes whole.
        frames = worker.run("throw new Error('x'.repeat(40000))")
        worker.sock.sendall(INTERRUPT)  # as if the interrupt came in that instant
        assert [f["type"] for f in frames] == ["error", "done"], frames
        assert frames[0]["value"] == "x" * 40000
        assert outcome(worker.run("kept")) == "'k'"
    finally:
        worker.close()
