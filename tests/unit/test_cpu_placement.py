"""The lone-execution rule (``Overlap``) and the worker's pinning while it waits (``CpuHome``)."""

from __future__ import annotations

import os
import threading

from cellbox.sessions.overlap import CALM_S, Overlap
from cellbox.workers.python.cpu_home import CpuHome


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_execution_alone_on_a_calm_node_keeps_its_cpu() -> None:
    overlap = Overlap(Clock())
    assert overlap.begin() is True
    overlap.end()
    assert overlap.begin() is True
    overlap.end()
    assert overlap.running == 0


def test_executions_side_by_side_do_not_and_the_node_calms_down_later() -> None:
    clock = Clock()
    overlap = Overlap(clock)
    assert overlap.begin() is True  # asked before the second came: it stays asked
    assert overlap.begin() is False
    overlap.end()
    overlap.end()
    clock.now += CALM_S / 2
    assert overlap.begin() is False  # alone again, but too soon
    overlap.end()
    clock.now += CALM_S
    assert overlap.begin() is True
    overlap.end()


def _in_a_thread(work) -> object:  # noqa: ANN001 - a callable; affinity is per thread
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def test_cpu_home_pins_while_waiting_and_gives_back_the_mask_it_found() -> None:
    def work() -> tuple[set[int], set[int], set[int]]:
        before = os.sched_getaffinity(0)
        home = CpuHome()
        home.keep()
        waiting = os.sched_getaffinity(0)
        home.release()
        return before, waiting, os.sched_getaffinity(0)

    before, waiting, after = _in_a_thread(work)
    assert after == before
    if len(before) > 1:
        assert len(waiting) == 1 and waiting <= before
    else:  # nothing to choose from: left alone
        assert waiting == before


def test_cpu_home_gives_back_a_mask_the_code_set() -> None:
    def work() -> tuple[set[int], set[int]]:
        allowed = sorted(os.sched_getaffinity(0))
        chosen = set(allowed[-2:])  # the code narrowed the main thread's CPUs itself
        os.sched_setaffinity(0, chosen)
        home = CpuHome()
        home.keep()
        home.release()
        return chosen, os.sched_getaffinity(0)

    chosen, after = _in_a_thread(work)
    assert after == chosen


def test_release_without_keep_changes_nothing() -> None:
    def work() -> tuple[set[int], set[int]]:
        before = os.sched_getaffinity(0)
        CpuHome().release()
        return before, os.sched_getaffinity(0)

    before, after = _in_a_thread(work)
    assert after == before
