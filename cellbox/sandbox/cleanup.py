"""Killing a unit's processes where no cgroup holds them: by pidfile, tree and tag.

A launch chain's shell writes its pid (later the bwrap or worker pid: it execs) to the
unit's pidfile. Without cgroups, that process, its descendants and, for chains without a
pid namespace, every process tagged with the unit in its environment are killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from cellbox import procfs
from cellbox.sandbox.policy import UNIT_TAG


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def tagged_processes(unit: str) -> list[int]:
    return procfs.with_environment_entry(f"{UNIT_TAG}={unit}".encode())


def kill_pidfile(pidfile: Path, unit: str, tagged: bool) -> None:
    """Kill what the pidfile names (bwrap: the whole pid namespace) and its offspring."""
    try:
        pid = int(procfs.read_text(pidfile).strip())
        written_age = time.time() - pidfile.stat().st_mtime
    except (OSError, ValueError):
        pid = 0
        written_age = 0.0
    victims: list[int] = []
    age = procfs.start_age(pid) if pid > 1 else None
    # A pid that started after the pidfile was written is a reuse, not ours.
    if age is not None and age + 0.5 >= written_age:
        victims.append(pid)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGSTOP)
        victims += procfs.descendants([pid])
    if tagged:
        victims += tagged_processes(unit)
    for _ in range(3):
        if not victims:
            break
        if pid in victims:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        for victim in victims:
            _kill(victim)
        victims = [v for v in procfs.descendants(victims) if v not in victims]
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
