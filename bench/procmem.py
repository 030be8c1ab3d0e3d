"""Process memory (PSS) from /proc: find a context's processes and sum their memory.

Reading other processes' ``smaps_rollup`` and ``fd`` links needs root (or the same uid).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cellbox import procfs

PROC = Path("/proc")


def _pids() -> list[int]:
    return procfs.pids()


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) for every process currently visible."""
    return procfs.process_table()


def cmdline(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def descendants(pid: int, table: dict[int, tuple[int, str]]) -> list[int]:
    """All processes below ``pid`` (children, grandchildren, ...), breadth first."""
    return procfs.descendants([pid], table)


def ancestors(pid: int, table: dict[int, tuple[int, str]], stop: int | None) -> list[int]:
    """Parents of ``pid`` up to (not including) ``stop`` or pid 1."""
    out: list[int] = []
    current = table.get(pid, (0, ""))[0]
    while current > 1 and current != stop and current in table:
        out.append(current)
        current = table[current][0]
    return out


def memory_kb(pid: int) -> dict[str, int] | None:
    """Pss, Rss and USS (private clean + dirty) in kB from smaps_rollup; None if gone."""
    try:
        text = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            values[key.strip()] = int(parts[0])
    return {
        "pss_kb": values.get("Pss", 0),
        "rss_kb": values.get("Rss", 0),
        "uss_kb": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


def pids_holding_file(name_fragment: str) -> list[int]:
    """Processes with an open file descriptor whose path contains ``name_fragment``."""
    found: list[int] = []
    for pid in _pids():
        fd_dir = PROC / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if name_fragment in target:
                found.append(pid)
                break
    return found


def pids_with_cwd(path: str) -> list[int]:
    """Processes whose working directory (as /proc shows it to us) is ``path``."""
    found: list[int] = []
    wanted = os.path.normpath(path)
    for pid in _pids():
        try:
            cwd = os.readlink(PROC / str(pid) / "cwd")
        except OSError:
            continue
        if os.path.normpath(cwd) == wanted:
            found.append(pid)
    return found


def topmost(pids: list[int], table: dict[int, tuple[int, str]]) -> list[int]:
    """Those of ``pids`` that have no ancestor in ``pids`` (roots of their subtrees)."""
    chosen = set(pids)
    roots = []
    for pid in pids:
        if not any(a in chosen for a in ancestors(pid, table, None)):
            roots.append(pid)
    return roots


def subtree_memory(root_pids: list[int], helper_stop: int | None = None) -> dict:
    """Sum memory over ``root_pids`` and their descendants.

    With ``helper_stop`` (the server's pid) also lists, not summed into the total, the
    ancestors of each root below it: sandbox helpers such as bwrap, or a zygote.
    """
    table = process_table()
    roots = topmost([p for p in root_pids if p in table], table)
    members: list[int] = []
    for root in roots:
        for pid in [root, *descendants(root, table)]:
            if pid not in members:
                members.append(pid)
    processes = []
    totals = {"pss_kb": 0, "rss_kb": 0, "uss_kb": 0}
    for pid in members:
        mem = memory_kb(pid)
        if mem is None:
            continue
        for key in totals:
            totals[key] += mem[key]
        processes.append({"pid": pid, "comm": table[pid][1], "cmdline": cmdline(pid)[:160], **mem})
    helpers = []
    seen = set(members)
    for root in roots if helper_stop is not None else []:
        for pid in ancestors(root, table, helper_stop):
            if pid in seen:
                continue
            seen.add(pid)
            mem = memory_kb(pid) or {}
            helpers.append(
                {"pid": pid, "comm": table[pid][1], "cmdline": cmdline(pid)[:160], **mem}
            )
    return {
        **totals,
        "pss_mb": round(totals["pss_kb"] / 1024, 2),
        "processes": processes,
        "ancestors_not_summed": helpers,
    }


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime + stime (clock ticks) of each of ``pids`` still alive."""
    out: dict[int, int] = {}
    for pid in pids:
        try:
            stat = (PROC / str(pid) / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        # After "comm)": state is field 3 of stat(5), so utime (14) and stime (15)
        # are at offsets 11 and 12 here.
        out[pid] = int(fields[11]) + int(fields[12])
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    return [pid, *descendants(pid, process_table())]


def cpu_seconds(pid: int) -> float:
    """CPU seconds of one process so far: every thread's run time from its ``schedstat``
    (nanoseconds; ``stat``'s clock ticks are too coarse for a few hundred requests)."""
    total = 0
    for task in (PROC / str(pid) / "task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def cpu_per_call_us(pid: int, call: Callable[[], object], count: int) -> float:
    """Microseconds of ``pid``'s CPU per ``call()``, over ``count`` calls."""
    before = cpu_seconds(pid)
    for _ in range(count):
        call()
    return round((cpu_seconds(pid) - before) / count * 1e6, 1)
