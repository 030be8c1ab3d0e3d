"""A thread's context switches, read from /proc: for tests that check what wakes a thread."""

from __future__ import annotations

import os


def named(pid: int, name: str) -> int:
    """The id of process ``pid``'s thread called ``name``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            if comm.read().strip() == name:
                return int(tid)
    raise AssertionError(f"process {pid} has no thread {name!r}")


def switches(pid: int, tid: int) -> tuple[int, int]:
    """The thread's context switches so far: (voluntary, i.e. it slept; involuntary)."""
    counts = {}
    with open(f"/proc/{pid}/task/{tid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                counts[key] = int(value)
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]
