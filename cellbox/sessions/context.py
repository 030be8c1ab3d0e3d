"""One context: a language, a work directory and (while alive) one worker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cellbox.cluster.identity import new_context_id
from cellbox.deaths import Death
from cellbox.process.worker import WorkerProcess
from cellbox.runtimes import Runtime
from cellbox.sandbox.netpolicy import Policy
from cellbox.sessions.execution import WHILE_IDLE, Execution
from cellbox.sessions.pools import WorkerPool, Workspace

# How long an execution waits for the answer of the one before it, which told of a loss of
# state, to reach its client; past that the loss counts as untold and is told again.
ANSWER_WAIT_S = 5.0


class Context:
    """One persistent REPL. What an :class:`Execution` needs of it is its ``Session``."""

    def __init__(
        self,
        runtime: Runtime,
        pool: WorkerPool,
        workspace: Workspace,
        worker: WorkerProcess,
        cwd: str,
        network: Policy,
        node_id: str,
    ) -> None:
        self.id = new_context_id(node_id)
        self.node_id = node_id
        self.runtime = runtime
        self.network = network  # what its code may reach, for every worker it gets
        self.pool = pool
        self.workspace = workspace
        self.worker: WorkerProcess | None = worker
        worker.owner = self.id
        self.cwd = cwd
        self.execution_count = 0
        self.lock = asyncio.Lock()  # FIFO: asyncio.Lock wakes waiters in arrival order
        self.running: Execution | None = None
        self.untold: tuple[Death, str] | None = None  # a loss of state no client heard of
        self.telling: asyncio.Future[None] | None = None  # an answer that tells of it is sent
        self.closed = False
        self.last_used = time.monotonic()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "language": self.runtime.name,
            "cwd": self.cwd,
            "network": self.network.describe(),
            "node": self.node_id,
        }

    async def lost_process(self) -> tuple[Death, str] | None:
        """A loss of the state no client was told of yet, and when it happened: the
        process ended by itself while idle, or during an execution whose client had gone
        away. The caller must tell it (the process is discarded, the counter reset).
        """
        telling, self.telling = self.telling, None
        if telling is not None:  # did the client of the execution before hear of its loss?
            await asyncio.wait([telling], timeout=ANSWER_WAIT_S)
        untold, self.untold = self.untold, None
        worker = self.worker
        # Every told loss discards the worker, so a context that still holds one that is
        # not alive lost it unseen: whatever ended it, the next execution says so.
        if worker is not None and not worker.alive:
            untold = (await worker.death(), WHILE_IDLE)
            await self.discard_worker(worker)
        return untold

    async def ready_worker(self) -> WorkerProcess:
        """The context's worker, started afresh if it has none (``lost_process`` first)."""
        if self.worker is None:
            own_dir = self.cwd == str(self.workspace.path)
            self.worker = await self.pool.start_worker(
                self.workspace, self.network, None if own_dir else self.cwd
            )
            self.worker.owner = self.id
        return self.worker

    async def discard_worker(self, worker: WorkerProcess) -> None:
        """Kill a worker of this context; its state is gone, so the counter starts again."""
        if self.worker is worker:  # first: the kill takes a while, others may look
            self.worker = None
            self.execution_count = 0
        await worker.kill()
