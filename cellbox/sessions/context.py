"""One context: a language, a work directory and (while alive) one worker."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from cellbox.deaths import Death
from cellbox.process.worker import WorkerProcess
from cellbox.runtimes import Runtime
from cellbox.sessions.execution import Execution
from cellbox.sessions.pools import WorkerPool, Workspace


class Context:
    """One persistent REPL. What an :class:`Execution` needs of it is its ``Session``."""

    def __init__(
        self,
        runtime: Runtime,
        pool: WorkerPool,
        workspace: Workspace,
        worker: WorkerProcess,
        cwd: str,
    ) -> None:
        self.id = "ctx_" + secrets.token_hex(12)
        self.runtime = runtime
        self.pool = pool
        self.workspace = workspace
        self.worker: WorkerProcess | None = worker
        worker.owner = self.id
        self.cwd = cwd
        self.execution_count = 0
        self.lock = asyncio.Lock()  # FIFO: asyncio.Lock wakes waiters in arrival order
        self.running: Execution | None = None
        self.closed = False
        self.last_used = time.monotonic()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "language": self.runtime.name, "cwd": self.cwd}

    async def lost_process(self) -> Death | None:
        """How the worker ended by itself since the last execution, if it did.

        The worker is then discarded (state gone, counter reset): the caller must say so.
        """
        worker = self.worker
        if worker is None or not worker.died:
            return None
        death = await worker.death()
        await self.discard_worker(worker)
        return death

    async def ready_worker(self) -> WorkerProcess:
        """The context's worker, started afresh if the last one was lost."""
        if self.worker is None or not self.worker.alive:
            if self.worker is not None:
                await self.discard_worker(self.worker)
            own_dir = self.cwd == str(self.workspace.path)
            self.worker = await self.pool.start_worker(
                self.workspace, None if own_dir else self.cwd
            )
            self.worker.owner = self.id
        return self.worker

    async def discard_worker(self, worker: WorkerProcess) -> None:
        """Kill a worker of this context; its state is gone, so the counter starts again."""
        await worker.kill()
        if self.worker is worker:
            self.worker = None
            self.execution_count = 0
