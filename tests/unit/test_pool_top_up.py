"""When a warm pool starts its replacement workers (cellbox.sessions.pools): a take that
leaves workers ready tops the pool up only TOP_UP_DELAY_S later, so the new context's
first cells have the CPU; a pool that runs empty, a first fill and a warm worker's death
start one at once. The workers here are stand-ins: what is checked is the pool's timing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cellbox.runtimes import PYTHON
from cellbox.sandbox.netpolicy import Policy
from cellbox.sandbox.network import Network
from cellbox.sessions import pools
from cellbox.sessions.pools import WorkerPool, Workspace

HOST = Policy("host")


class StandIn:
    """What the pool asks of a worker."""

    def __init__(self) -> None:
        self.alive = True
        self.on_death = None
        self.network = None

    async def kill(self) -> None:
        self.alive = False

    def die(self) -> None:
        self.alive = False
        if self.on_death is not None:
            self.on_death()


class CountingPool(WorkerPool):
    def __init__(self, size: int) -> None:
        super().__init__(PYTHON, sandbox=None, size=size, network=Network("host", privileged=False))  # type: ignore[arg-type]
        self.started: list[StandIn] = []

    def _make_zygote(self) -> None:
        return None

    async def new_workspace(self) -> Workspace:
        return Workspace(f"w{len(self.started)}", Path("/nonexistent"))

    async def drop_workspace(self, workspace: Workspace) -> None:
        pass

    async def start_worker(self, workspace: Workspace, policy: Policy, cwd: str | None = None):  # type: ignore[override]
        await asyncio.sleep(0)
        worker = StandIn()
        self.started.append(worker)
        return worker


async def _until(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def _full_pool(size: int) -> CountingPool:
    pool = CountingPool(size)
    pool.refill()  # the first fill: at once
    assert await _until(lambda: pool.ready == size)
    return pool


@pytest.fixture
def long_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    # far longer than any test waits: a top-up that waits for it never starts here
    monkeypatch.setattr(pools, "TOP_UP_DELAY_S", 600.0)


def test_a_take_that_leaves_workers_ready_waits_and_one_that_empties_the_pool_does_not(
    long_delay: None,
) -> None:
    async def run() -> None:
        pool = await _full_pool(2)
        assert len(pool.started) == 2

        await pool.take(HOST)
        await asyncio.sleep(0.2)
        assert (pool.ready, len(pool.started)) == (1, 2)  # waiting out the delay

        await pool.take(HOST)  # the pool is empty now: no more waiting
        assert await _until(lambda: pool.ready == 2)
        assert len(pool.started) == 4
        await pool.close()

    asyncio.run(run())


async def _started_until_refilled_after_a_take(size: int) -> int:
    """Workers started in all until a full pool of ``size`` is full again after a take."""
    pool = await _full_pool(size)
    await pool.take(HOST)
    assert await _until(lambda: pool.ready == size)
    await pool.close()
    return len(pool.started)


def test_a_take_that_empties_the_pool_starts_its_top_up_at_once(long_delay: None) -> None:
    assert asyncio.run(_started_until_refilled_after_a_take(1)) == 2


def test_the_top_up_starts_once_the_delay_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pools, "TOP_UP_DELAY_S", 0.05)
    assert asyncio.run(_started_until_refilled_after_a_take(2)) == 3


def test_a_warm_worker_that_dies_is_replaced_at_once(long_delay: None) -> None:
    async def run() -> None:
        pool = await _full_pool(2)
        pool.started[0].die()
        assert await _until(lambda: len(pool.started) == 3 and pool.ready == 2)
        await pool.close()

    asyncio.run(run())
