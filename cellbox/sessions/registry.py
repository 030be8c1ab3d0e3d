"""The registry of live contexts: ids, language, FIFO executions, lifecycle, reaping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Literal

from cellbox.config import Settings
from cellbox.packages.wheelhouse import WheelCache
from cellbox.process.sandbox_calls import AsyncSandbox
from cellbox.runtimes import Runtime
from cellbox.sandbox.netpolicy import Policy
from cellbox.sandbox.network import Network
from cellbox.sessions.context import Context
from cellbox.sessions.execution import (
    DELETED,
    INTERRUPT,
    RESTARTED,
    SHUTDOWN,
    SHUTTING_DOWN,
    Execution,
    ExecutionLimits,
    ShuttingDown,
)
from cellbox.sessions.fates import Fates
from cellbox.sessions.pools import pools_for

log = logging.getLogger("cellbox.contexts")

LIVE_CONTEXTS_LOG = "live-contexts"  # in the state directory: see :mod:`.fates`


class ContextNotFound(LookupError):
    """An unknown context; ``reason``: why it is gone, when that was not its client's doing."""

    def __init__(self, context_id: str, reason: str | None = None) -> None:
        text = f"context {context_id} not found"
        super().__init__(f"{text}: {reason}" if reason else text)


class TooManyContexts(RuntimeError):
    pass


class ContextRegistry:
    """Creates, finds, runs, restarts and removes contexts."""

    def __init__(self, settings: Settings, sandbox: AsyncSandbox, network: Network) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.network = network
        self.pools = pools_for(sandbox, settings.pool_size, network)
        self._contexts: dict[str, Context] = {}
        self._executions: set[Execution] = set()  # queued or running
        self._hurry = asyncio.Event()
        self._creating = 0
        self._closing = False
        self._reaper: asyncio.Task[None] | None = None
        self.wheels = WheelCache(sandbox.wheelhouse) if sandbox.wheelhouse else None
        self.fates = Fates(settings.state_dir / LIVE_CONTEXTS_LOG)

    def start(self) -> None:
        """Fill the warm pools and start reaping idle contexts."""
        for pool in self.pools.values():
            pool.refill()
        self._reaper = asyncio.create_task(self._reap_idle())
        if self.wheels is not None:
            # never fetched for a context: what its own network policy keeps it from
            self.wheels.start(
                lambda: [c.workspace.path for c in self.list() if c.network.reaches_the_internet]
            )

    @property
    def closing(self) -> bool:
        """Shutting down: new work is refused."""
        return self._closing

    # -- lookup -----------------------------------------------------------------------

    def get(self, context_id: str) -> Context:
        context = self._contexts.get(context_id)
        if context is None or context.closed:
            raise ContextNotFound(context_id, self.fates.why(context_id))
        return context

    def list(self) -> list[Context]:
        return [c for c in self._contexts.values() if not c.closed]

    # -- lifecycle --------------------------------------------------------------------

    async def create(
        self, runtime: Runtime, cwd: str | None = None, network: Policy | None = None
    ) -> Context:
        """A new context with a ready worker. ``ValueError`` if ``cwd`` is unusable.

        ``network``: admitted by ``self.network`` already (the caller); default: the mode.
        """
        policy = network or self.network.default()
        if self._closing:
            raise ShuttingDown(SHUTTING_DOWN)
        if len(self._contexts) + self._creating >= self.settings.max_contexts:
            raise TooManyContexts(
                f"too many live contexts (limit {self.settings.max_contexts}); "
                "delete some or wait for idle ones to be removed"
            )
        self._creating += 1
        try:
            pool = self.pools[runtime.name]
            worker, workspace = await pool.take(policy)
            if cwd is not None:
                try:
                    await worker.change_directory(cwd)
                except BaseException:
                    await worker.kill()
                    await pool.drop_workspace(workspace)
                    raise
            context = Context(
                runtime,
                pool,
                workspace,
                worker,
                cwd or str(workspace.path),
                policy,
                self.settings.node_id,
            )
            self._contexts[context.id] = context
            self.fates.created(context.id)
            return context
        finally:
            self._creating -= 1

    def execute(
        self,
        context: Context,
        code: str,
        env: dict[str, str],
        timeout_ms: int,
        *,
        numbered: bool = True,
    ) -> Execution:
        """Queue an execution on the context (runs when the ones before it are done).
        ``numbered=False``: the server's own code, which the worker keeps out of the
        context's cell history (``In``, ``Out``, ``_N``)."""
        if self._closing:
            raise ShuttingDown(SHUTTING_DOWN)
        context.touch()
        limits = ExecutionLimits(
            timeout_ms=timeout_ms,
            output_cap_bytes=self.settings.output_cap_bytes,
            items_cap_bytes=self.settings.items_cap_bytes,
            interrupt_grace_s=self.settings.interrupt_grace_s,
            shutdown_grace_s=self.settings.shutdown_grace_s,
        )
        execution = Execution(context, code, env, limits, numbered=numbered)
        self._executions.add(execution)
        execution.task.add_done_callback(lambda _: self._ended(execution))
        return execution

    def _ended(self, execution: Execution) -> None:
        self._executions.discard(execution)
        if self.wheels is not None:
            self.wheels.code_ran()

    async def delete(
        self, context_id: str, *, by: Literal["client", "idle", "shutdown"] = "client"
    ) -> None:
        """Remove a context. Its 404 from now on says why unless its client asked
        (``by="shutdown"``: the next run of the server tells that it was lost)."""
        context = self.get(context_id)
        context.closed = True
        del self._contexts[context.id]
        if by == "client":
            self.fates.deleted(context.id)
        elif by == "idle":
            self.fates.reaped(context.id, self.settings.idle_timeout_s)
        if context.running is not None:
            context.running.stop(DELETED)
        if context.worker is not None:
            await context.worker.kill()
            context.worker = None
        await context.pool.drop_workspace(context.workspace)

    async def restart(self, context_id: str) -> Context:
        """Replace the context's process: state cleared, counter reset."""
        context = self.get(context_id)
        if context.running is not None:
            context.running.stop(RESTARTED)
        if context.worker is not None:
            await context.discard_worker(context.worker)
        context.execution_count = 0
        context.untold = context.telling = None  # the caller asked for a fresh state
        context.touch()
        return context

    def interrupt(self, context_id: str) -> Context:
        context = self.get(context_id)
        if context.running is not None:
            context.running.stop(INTERRUPT)
        return context

    async def _reap_idle(self) -> None:
        period = max(0.5, min(30.0, self.settings.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - self.settings.idle_timeout_s
            for context in self.list():
                if context.running is None and not context.lock.locked():
                    if context.last_used < cutoff:
                        log.info("removing idle context %s", context.id)
                        with contextlib.suppress(ContextNotFound):
                            await self.delete(context.id, by="idle")

    async def drain(self) -> None:
        """Refuse new work (503); give the executions already accepted the shutdown grace
        period to finish, then stop them (interrupt, and kill what ignores it)."""
        self._closing = True
        grace = self.settings.shutdown_grace_s
        if self._executions and not self._hurry.is_set():
            log.warning(
                "shutting down: new executions are refused; %d accepted one(s) get up to "
                "%g s to finish",
                len(self._executions),
                grace,
            )
            finished = asyncio.ensure_future(asyncio.wait([e.task for e in self._executions]))
            hurried = asyncio.ensure_future(self._hurry.wait())
            await asyncio.wait([finished, hurried], timeout=grace, return_when="FIRST_COMPLETED")
            finished.cancel()
            hurried.cancel()
        if self._executions:
            log.warning("shutting down: stopping %d execution(s)", len(self._executions))
            for execution in list(self._executions):
                execution.stop(SHUTDOWN)
            await asyncio.wait(
                [e.task for e in self._executions],
                timeout=self.settings.interrupt_grace_s + 5,
            )

    def hurry(self) -> None:
        """Cut the shutdown grace period short: stop the running executions now."""
        self._hurry.set()

    async def close(self) -> None:
        """Stop everything: every context's processes and the warm pools."""
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        if self.wheels is not None:
            await self.wheels.stop()
        for context in list(self._contexts.values()):
            with contextlib.suppress(ContextNotFound):
                await self.delete(context.id, by="shutdown")
        self.fates.close()
        for pool in self.pools.values():
            await pool.close()
        await self.sandbox.close()
