"""A running server: its event loop's thread on one CPU, at real-time priority; its other
threads, the workers and every process they start on all CPUs, as ordinary threads
(``cellbox.placement``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from cellbox import procfs
from tests.conftest import Client, Server

T = TypeVar("T")
ALL = os.sched_getaffinity(0)  # the server's, as it inherits the suite's


def _per_thread(pid: int, read: Callable[[int], T]) -> dict[str, T]:
    """``read(tid)`` of each live thread of ``pid``, keyed ``tid name``."""
    found: dict[str, T] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:  # the process ended meanwhile
        return found
    for tid in tids:
        try:
            name = procfs.read_text(f"/proc/{pid}/task/{tid}/comm").strip()
            found[f"{tid} {name}"] = read(int(tid))
        except OSError:  # ended meanwhile
            pass
    return found


def _masks(pid: int) -> dict[str, set[int]]:
    """Each live thread of ``pid`` and its CPUs."""
    return _per_thread(pid, os.sched_getaffinity)


def test_the_event_loop_runs_on_its_home_cpu_and_the_other_threads_on_all(server: Server):
    assert server.pid is not None
    masks = _masks(server.pid)
    (main,) = (thread for thread in masks if thread.split()[0] == str(server.pid))
    home = masks.pop(main)  # the main thread's, which runs the event loop
    assert home <= ALL and len(home) == (1 if len(ALL) > 1 else len(ALL))
    narrowed = {thread: mask for thread, mask in masks.items() if mask != ALL}
    assert masks and not narrowed


def test_the_event_loop_alone_runs_at_realtime_priority(server: Server, client: Client):
    # The suite runs as root: the server may make its loop thread real-time. A context's
    # worker is among the descendants checked (what its code sees: tests/security).
    python = client.context("python")
    try:
        assert server.pid is not None
        policies = _per_thread(server.pid, os.sched_getscheduler)
        (main,) = (thread for thread in policies if thread.split()[0] == str(server.pid))
        main_policy = policies.pop(main)
        assert main_policy == (
            os.SCHED_FIFO | os.SCHED_RESET_ON_FORK if len(ALL) > 1 else os.SCHED_OTHER
        )
        for pid in procfs.descendants([server.pid]):  # workers, zygotes, network helpers
            policies.update(_per_thread(pid, os.sched_getscheduler))
        assert policies and set(policies.values()) == {os.SCHED_OTHER}
    finally:
        client.delete(f"/contexts/{python}")


def test_contexts_and_what_their_code_starts_run_on_all_cpus(server: Server, client: Client):
    python, typescript = client.context("python"), client.context("typescript")
    try:
        mask = client.run("import os; sorted(os.sched_getaffinity(0))", context_id=python)
        assert mask["items"][0]["text"] == str(sorted(ALL))
        code = (
            "import subprocess, sys\n"
            "command = [sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))']\n"
            "subprocess.run(command, capture_output=True, text=True).stdout.strip()"
        )
        assert client.run(code, context_id=python)["items"][0]["text"] == repr(str(sorted(ALL)))
        code = "require('fs').readFileSync('/proc/self/status', 'utf8').match(/Cpus_allowed_list:\\s*(\\S+)/)[1]"
        listed = client.run(code, context_id=typescript)["items"][0]["text"].strip("'\"")
        assert listed == (f"{min(ALL)}-{max(ALL)}" if len(ALL) > 1 else str(min(ALL)))
        assert server.pid is not None
        for pid in procfs.descendants([server.pid]):  # workers, zygotes, network helpers
            for thread, mask in _masks(pid).items():
                assert mask == ALL, (pid, thread, mask)
    finally:
        client.delete(f"/contexts/{python}")
        client.delete(f"/contexts/{typescript}")
