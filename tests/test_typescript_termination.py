"""An interrupt's termination that lands in the TypeScript worker's own code at the end of
an execution (cellbox/workers/ts/output.mjs, io_thread.mjs): the execution still ends with
`Interrupted` and the context keeps its state. The termination is made to land at the one
instant where it used to lose the `done` (the execution marked finished, its ending frames
not written yet) by a module preloaded into the worker (tests/ts_faults)."""

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
