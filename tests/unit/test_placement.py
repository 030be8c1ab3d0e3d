"""The event loop's pin (``Placement``): its thread on one CPU, what it starts on all."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cellbox
from cellbox.placement import Placement

ALL = os.sched_getaffinity(0)
SEVERAL = len(ALL) > 1


def _in_own_thread(work: Callable[[], Any]) -> Any:
    """``work()`` in a new thread (a CPU mask is a thread's), its result or its exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


PRINT_MASK = "import os; print(sorted(os.sched_getaffinity(0)))"


def test_the_loop_thread_is_pinned_until_stop() -> None:
    async def main() -> tuple[set[int], int | None, set[int]]:
        placement = Placement()
        await placement.start()
        during = os.sched_getaffinity(0)
        home = placement.home
        placement.stop()
        return during, home, os.sched_getaffinity(0)

    during, home, after = _in_own_thread(lambda: asyncio.run(main()))
    assert after == ALL
    if SEVERAL:
        assert home in ALL and during == {home}
    else:  # nothing to choose from: left alone
        assert home is None and during == ALL


def test_processes_and_threads_it_starts_run_on_all_cpus() -> None:
    async def main() -> tuple[set[int], str, set[int]]:
        placement = Placement()
        await placement.start()
        try:
            child = await placement.spawn(
                sys.executable, "-c", PRINT_MASK, stdout=asyncio.subprocess.PIPE
            )
            printed, _ = await child.communicate()
            in_default_pool = await asyncio.to_thread(os.sched_getaffinity, 0)
            return os.sched_getaffinity(0), printed.decode(), in_default_pool
        finally:
            placement.stop()

    loop_mask, child_mask, pool_mask = _in_own_thread(lambda: asyncio.run(main()))
    assert child_mask.strip() == str(sorted(ALL))
    assert pool_mask == ALL
    assert len(loop_mask) == (1 if SEVERAL else len(ALL))  # pinned again after the spawn


def test_unpinned_blocks_nest_and_the_pin_comes_back_after_the_last() -> None:
    async def main() -> list[set[int]]:
        placement = Placement()
        await placement.start()
        seen = [{placement.home} if placement.home is not None else ALL]
        with placement.unpinned():
            seen.append(os.sched_getaffinity(0))
            with placement.unpinned():
                seen.append(os.sched_getaffinity(0))
            seen.append(os.sched_getaffinity(0))
        seen.append(os.sched_getaffinity(0))
        placement.stop()
        return seen

    seen = _in_own_thread(lambda: asyncio.run(main()))
    home, *inside, after = seen
    assert inside == [ALL, ALL, ALL]
    assert after == home and len(home) == (1 if SEVERAL else len(ALL))


def test_a_pools_initializer_widens_its_thread_then_runs_the_next_one() -> None:
    async def main() -> tuple[set[int], list[str]]:
        placement = Placement()
        await placement.start()
        ran: list[str] = []
        masks: list[set[int]] = []

        def start_thread() -> None:
            placement.on_all_cpus(ran.append, "then")
            masks.append(os.sched_getaffinity(0))

        thread = threading.Thread(target=start_thread)  # inherits the loop thread's pin
        thread.start()
        thread.join()
        placement.stop()
        return masks[0], ran

    mask, ran = _in_own_thread(lambda: asyncio.run(main()))
    assert mask == ALL and ran == ["then"]


def test_outside_the_loop_thread_nothing_changes() -> None:
    placement = Placement()
    with placement.unpinned():
        assert os.sched_getaffinity(0) == ALL
    placement.stop()
    assert os.sched_getaffinity(0) == ALL


def test_the_server_starts_its_processes_through_spawn() -> None:
    # A process started from the event loop's thread would inherit its pin: every one goes
    # through Placement.spawn (a child.start or create_subprocess_exec elsewhere is a
    # pinned child).
    package = Path(cellbox.__file__).parent
    direct = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "placement.py"
        and any(call in path.read_text() for call in ("create_subprocess_exec(", "child.start("))
    ]
    assert direct == []


FIFO = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
PRINT_POLICY = "import os; print(os.sched_getscheduler(0))"


def _may_be_realtime() -> bool:
    """Whether this process may make a thread real-time (the right to, and real-time time
    in its cgroup): the loop thread is made so only where it may."""

    def attempt() -> bool:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except OSError:
            return False
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return True

    return _in_own_thread(attempt)


def test_a_realtime_loop_thread_runs_ahead_until_stop_and_starts_nothing_realtime() -> None:
    async def main() -> tuple[int, int, str, int, int]:
        placement = Placement()
        await placement.start(realtime=True)
        try:
            during = os.sched_getscheduler(0)
            priority = os.sched_getparam(0).sched_priority
            child = await placement.spawn(
                sys.executable, "-c", PRINT_POLICY, stdout=asyncio.subprocess.PIPE
            )
            printed, _ = await child.communicate()
            in_pool = await asyncio.to_thread(os.sched_getscheduler, 0)
        finally:
            placement.stop()
        return during, priority, printed.decode().strip(), in_pool, os.sched_getscheduler(0)

    during, priority, child_policy, pool_policy, after = _in_own_thread(lambda: asyncio.run(main()))
    if SEVERAL and _may_be_realtime():
        assert (during, priority) == (FIFO, 1)
    else:  # not pinned, or not allowed: an ordinary thread, and the server goes on
        assert (during, priority) == (os.SCHED_OTHER, 0)
    assert int(child_policy) == os.SCHED_OTHER and pool_policy == os.SCHED_OTHER
    assert after == os.SCHED_OTHER


def test_the_loop_thread_stays_ordinary_unless_asked() -> None:
    async def main() -> int:
        placement = Placement()
        await placement.start()
        try:
            return os.sched_getscheduler(0)
        finally:
            placement.stop()

    assert _in_own_thread(lambda: asyncio.run(main())) == os.SCHED_OTHER


REFUSED = """
import asyncio, logging, os
from cellbox.placement import Placement

async def main():
    placement = Placement()
    await placement.start(realtime=True)
    print(os.sched_getscheduler(0), placement.home is not None)
    placement.stop()

logging.basicConfig(level=logging.WARNING, format="%(message)s")
asyncio.run(main())
"""


def test_without_the_right_to_it_the_loop_stays_ordinary_and_says_so() -> None:
    # setpriv takes CAP_SYS_NICE from the process (root keeps every other right).
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_nice", sys.executable, "-c", REFUSED],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(os.SCHED_OTHER), str(SEVERAL)]  # pinned all the same
    if SEVERAL:
        assert "the event loop gets no real-time priority" in done.stderr
