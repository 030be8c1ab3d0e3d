"""Warm pools: workers started ahead of need, so a new context takes one in O(1)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cellbox import metrics
from cellbox.packages.layout import shadows_shared
from cellbox.process.sandbox_calls import AsyncSandbox
from cellbox.process.worker import WorkerProcess
from cellbox.process.zygote_client import Zygote, ZygoteError
from cellbox.runtimes import RUNTIMES, Runtime
from cellbox.sandbox.netpolicy import Policy
from cellbox.sandbox.network import Network

log = logging.getLogger("cellbox.pool")

# A worker taken from a pool that still holds others is replaced this much later: starting
# one (a fork or a process, its warm-up cell, its network) takes the CPU that the new
# context's first cells need. A pool left empty is refilled at once.
TOP_UP_DELAY_S = 0.3


@dataclass
class Workspace:
    """A context's private work directory."""

    name: str
    path: Path


class WorkerPool:
    """Ready workers of one runtime, each started in a fresh workspace of its own."""

    def __init__(
        self, runtime: Runtime, sandbox: AsyncSandbox, size: int, network: Network
    ) -> None:
        self.runtime = runtime
        self.size = size
        self._sandbox = sandbox
        self._network = network
        self._warm_policy = network.default()  # warm workers are ready for the default
        self._ready: deque[tuple[WorkerProcess, Workspace]] = deque()
        self._refilling: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # a delayed top-up starts now: the pool ran empty
        self._discarding: set[asyncio.Task[None]] = set()
        self._closed = False
        self.warmed = size <= 0  # the pool was full once: the node is ready for traffic
        self._zygote = self._make_zygote()

    def _make_zygote(self) -> Zygote | None:
        if self.runtime.zygote_argv(0) is None:
            return None
        if not self._sandbox.supports_zygote:
            log.info(
                "%s workers start as separate processes: the sandbox cannot host a zygote "
                "here (it needs full isolation on cgroup v1)",
                self.runtime.name,
            )
            return None
        return Zygote(self.runtime, self._sandbox)

    @property
    def ready(self) -> int:
        """Warm workers waiting now."""
        return len(self._ready)

    async def new_workspace(self) -> Workspace:
        name = secrets.token_hex(8)
        return Workspace(name, await self._sandbox.create_workdir(name))

    async def drop_workspace(self, workspace: Workspace) -> None:
        await self._sandbox.remove_workdir(workspace.name)

    async def start_worker(
        self, workspace: Workspace, policy: Policy, cwd: str | None = None
    ) -> WorkerProcess:
        """A new worker in ``workspace`` whose network obeys ``policy`` before it is used."""
        worker = await self._start_process(workspace, cwd, self._network.departs(policy))
        if self._network.own_namespace(policy):
            try:
                worker.network = await self._network.attach(worker.process.pid, policy)
            except BaseException:
                await worker.kill()
                raise
            if not worker.alive:  # killed meanwhile: kill() saw no link to close
                await worker.network.close()
        return worker

    async def _start_process(
        self, workspace: Workspace, cwd: str | None, own_network: bool
    ) -> WorkerProcess:
        """Forked by the zygote if there is one, else spawned.

        A context whose own packages replace shared ones gets a fresh interpreter: the
        zygote has the shared versions imported already. ``own_network``: spawned with a
        network namespace of its own although the server's mode gives workers none (the
        zygote's children share the host's then).
        """
        metrics.worker_started(self.runtime.name)
        if own_network:
            return await WorkerProcess.start(
                self.runtime, self._sandbox, workspace.path, cwd, own_network=True
            )
        forkable = self._zygote is not None and self._zygote.usable()
        if forkable and not await asyncio.to_thread(shadows_shared, workspace.path):
            try:
                return await WorkerProcess.start(
                    self.runtime, self._sandbox, workspace.path, cwd, self._zygote
                )
            except ZygoteError as exc:
                log.warning("%s; starting the worker as a separate process", exc)
        return await WorkerProcess.start(self.runtime, self._sandbox, workspace.path, cwd)

    async def take(self, policy: Policy) -> tuple[WorkerProcess, Workspace]:
        """A ready worker and its workspace: from the pool, or started now if it is empty.

        A warm worker's network is made to obey ``policy`` as it is handed out; a policy
        that needs other namespaces than the warm workers have gets a new one.
        """
        while self._ready and not self._network.departs(policy):
            worker, workspace = self._ready.popleft()
            worker.on_death = None  # its death is the taker's to handle from now on
            if worker.alive:
                self.refill(after_take=True)
                try:
                    if worker.network is not None:
                        await worker.network.apply(policy)
                except BaseException:
                    await self._discard(worker, workspace)
                    raise
                return worker, workspace
            await self._discard(worker, workspace)
        self.refill()
        workspace = await self.new_workspace()
        try:
            return await self.start_worker(workspace, policy), workspace
        except BaseException:
            await self.drop_workspace(workspace)
            raise

    def refill(self, after_take: bool = False) -> None:
        """Start topping the pool up in the background, if it is not already: after a take
        that left workers ready, ``TOP_UP_DELAY_S`` later; at once when it is empty."""
        if self._closed or self.size <= 0:
            return
        if self._refilling is None or self._refilling.done():
            self._hurry.clear()
            delay = TOP_UP_DELAY_S if after_take else 0.0
            self._refilling = asyncio.create_task(self._refill(delay))
        if not self._ready:
            self._hurry.set()

    async def _refill(self, delay: float) -> None:
        if delay and self._ready:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), delay)
        failures = 0
        while not self._closed and len(self._ready) < self.size:
            workspace = await self.new_workspace()
            try:
                worker = await self.start_worker(workspace, self._warm_policy)
            except Exception as exc:
                await self.drop_workspace(workspace)
                failures += 1
                log.warning("could not start a warm %s worker: %s", self.runtime.name, exc)
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                continue
            failures = 0
            if self._closed:
                await self._discard(worker, workspace)
                return
            self._ready.append((worker, workspace))
            worker.on_death = functools.partial(self._lost, worker, workspace)
            self.warmed = self.warmed or len(self._ready) >= self.size

    def _lost(self, worker: WorkerProcess, workspace: Workspace) -> None:
        """A warm worker died while it waited: out of the pool, and another one started
        (the pool would otherwise stay short until the next take)."""
        try:
            self._ready.remove((worker, workspace))
        except ValueError:
            return
        task = asyncio.create_task(self._discard(worker, workspace))
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)
        self.refill()

    async def _discard(self, worker: WorkerProcess, workspace: Workspace) -> None:
        await worker.kill()
        await self.drop_workspace(workspace)

    async def close(self) -> None:
        self._closed = True
        if self._refilling is not None:
            self._refilling.cancel()
            with contextlib.suppress(BaseException):
                await self._refilling
        while self._ready:
            await self._discard(*self._ready.popleft())
        for task in list(self._discarding):
            with contextlib.suppress(BaseException):
                await task
        if self._zygote is not None:
            await self._zygote.close()


def pools_for(
    sandbox: AsyncSandbox, size_of: Callable[[str], int], network: Network
) -> dict[str, WorkerPool]:
    """One pool per runtime in ``RUNTIMES``, of the size configured for it."""
    return {
        name: WorkerPool(runtime, sandbox, size_of(name), network)
        for name, runtime in RUNTIMES.items()
    }
