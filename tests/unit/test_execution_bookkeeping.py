"""Every answered execution is counted once in ``cellbox_executions_total``, whatever path
its answer took (the paths that never reach a worker included)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cellbox import metrics
from cellbox.deaths import Death
from cellbox.runtimes.python import PYTHON
from cellbox.sessions.execution import DISCONNECT, WHILE_IDLE, Execution, ExecutionLimits

LIMITS = ExecutionLimits(
    timeout_ms=1000,
    output_cap_bytes=1 << 20,
    items_cap_bytes=1 << 20,
    interrupt_grace_s=1,
    shutdown_grace_s=1,
)


class Context:
    """A context whose process is lost, cannot start, or whose bookkeeping fails."""

    def __init__(self, untold: Any = None, start_error: Exception | None = None) -> None:
        self.id = "ctx_unit"
        self.runtime = PYTHON
        self.lock = asyncio.Lock()
        self.closed = False
        self.running = None
        self.execution_count = 0
        self.untold = None
        self.telling = None
        self._lost = untold
        self._start_error = start_error

    def touch(self) -> None:
        pass

    async def lost_process(self) -> Any:
        if isinstance(self._lost, Exception):
            raise self._lost
        return self._lost

    async def ready_worker(self) -> Any:
        assert self._start_error is not None
        raise self._start_error

    async def discard_worker(self, worker: Any) -> None:
        pass


def count(outcome: str) -> float:
    labels = {"node": metrics._node, "language": "python", "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("cellbox_executions_total", labels) or 0.0


async def answer(context: Context, disconnect: bool = False) -> list[dict[str, Any]]:
    async with context.lock:  # its turn comes after the client left, if it does
        execution = Execution(context, "x", {}, LIMITS)
        if disconnect:
            execution.stop(DISCONNECT)
    await execution.task
    return [event for batch in execution.queued() for event in batch]


DIED = (Death("signal", "was killed by SIGKILL"), WHILE_IDLE)


@pytest.mark.parametrize(
    ("context", "disconnect", "name", "outcome"),
    [
        (Context(untold=DIED), False, "ContextDied", "died"),
        (Context(start_error=RuntimeError("no sandbox")), False, "WorkerStartError", "error"),
        (Context(), True, "Disconnected", "cancelled"),
        (Context(untold=RuntimeError("a bug")), False, "InternalError", "error"),
    ],
)
def test_an_execution_answered_without_a_worker_is_counted_once(
    context: Context, disconnect: bool, name: str, outcome: str
) -> None:
    before = {label: count(label) for label in metrics.OUTCOMES}
    events = asyncio.run(answer(context, disconnect))
    assert [e["type"] for e in events] == ["error", "exit"], events
    assert events[0]["name"] == name
    after = {label: count(label) for label in metrics.OUTCOMES}
    grew = {label: after[label] - before[label] for label in metrics.OUTCOMES}
    assert grew == {label: float(label == outcome) for label in metrics.OUTCOMES}
