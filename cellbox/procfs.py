"""Reading the kernel's process table and writing its control files (/proc, /sys).

One parser for ``/proc/<pid>/stat`` (whose command name may hold spaces and parentheses),
shared by the sandbox's clean-up, the test suite and the benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")

# Fields of /proc/<pid>/stat after the ")" that ends the command name (proc(5) numbers
# them from 1 at the pid: state is field 3, so index 0 here).
_PPID = 1
_NUM_THREADS = 17
_START_TIME = 19


def read_text(path: str | Path) -> str:
    """The whole of a small kernel file as ASCII text."""
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def write_text(path: str | Path, value: str) -> None:
    """Write ``value`` to an existing kernel file (a cgroup knob, a /proc setting)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def pids() -> list[int]:
    """Every process id visible now."""
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


def stat_fields(pid: int) -> tuple[str, list[str]]:
    """(command name, fields after it) of ``/proc/<pid>/stat``; ``OSError`` if gone."""
    with open(PROC / str(pid) / "stat", "rb") as f:
        raw = f.read().decode(errors="replace")
    head, _, tail = raw.rpartition(")")
    return head.partition("(")[2], tail.split()


def parent_of(pid: int) -> int | None:
    """The parent's pid, or ``None`` if the process is gone."""
    try:
        return int(stat_fields(pid)[1][_PPID])
    except (OSError, IndexError, ValueError):
        return None


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every process visible now."""
    table: dict[int, tuple[int, str]] = {}
    for pid in pids():
        try:
            comm, fields = stat_fields(pid)
            table[pid] = (int(fields[_PPID]), comm)
        except (OSError, IndexError, ValueError):
            continue
    return table


def descendants(roots: Iterable[int], table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """Every process below ``roots`` (children, grandchildren, ...), breadth first."""
    children: dict[int, list[int]] = {}
    for child, (parent, _) in (process_table() if table is None else table).items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    seen = set(roots)
    queue = list(roots)
    while queue:
        for child in children.get(queue.pop(0), ()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                queue.append(child)
    return found


def start_age(pid: int) -> float | None:
    """Seconds since process ``pid`` started, or ``None`` if it does not exist."""
    try:
        started = int(stat_fields(pid)[1][_START_TIME])
        uptime = float(read_text(PROC / "uptime").split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return uptime - started / os.sysconf("SC_CLK_TCK")


def threads_of_uid(uid: int) -> int:
    """How many threads processes of ``uid`` run now (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += int(stat_fields(int(entry.name))[1][_NUM_THREADS])
        except (OSError, IndexError, ValueError):
            continue
    return count


def thread_count() -> int:
    """Threads of the calling process."""
    return len(os.listdir(PROC / "self" / "task"))


def with_environment_entry(entry: bytes) -> list[int]:
    """Processes whose environment holds ``entry`` (``NAME=value``) exactly."""
    found: list[int] = []
    for pid in pids():
        try:
            with open(PROC / str(pid) / "environ", "rb") as f:
                if entry in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return found


def read_pids(path: str | Path) -> list[int]:
    """The pids listed in a cgroup's ``cgroup.procs`` or ``tasks`` (none if it is gone)."""
    try:
        return [int(line) for line in read_text(path).split()]
    except (FileNotFoundError, ProcessLookupError):
        return []
