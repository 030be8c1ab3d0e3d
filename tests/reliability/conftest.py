"""Reliability suite: processes that die, a zygote that dies, a server that stops or is killed.

Every test talks to a real ``cellbox serve`` over HTTP and kills real processes from this
process (root on CI and on the reference machine), the way an operator or the kernel would.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from cellbox import procfs
from tests.conftest import Server
from tests.security.conftest import (
    SMALL_LIMITS,
    alive,
    cmdline,
    skip_unless_full,
    start_server,
    wait_until,
    worker_host_pid,
)

__all__ = ["alive", "wait_until", "worker_host_pid"]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server(**SMALL_LIMITS)
    skip_unless_full(srv)
    yield srv
    srv.stop()
    srv.cleanup()


def descendants(pid: int) -> list[int]:
    return procfs.descendants([pid])


def zygote_pid(server: Server) -> int:
    """The host pid of the server's Python zygote (the process that runs its module)."""
    assert server.process is not None

    def find() -> int | None:
        for pid in descendants(server.process.pid):
            argv = cmdline(pid).split(b"\0")
            if b"cellbox.workers.zygote" in argv and not argv[0].endswith(b"bwrap"):
                return pid
        return None

    pid = wait_until(find, timeout=30)
    assert pid, "no zygote process found"
    return pid


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)
    if sig == signal.SIGKILL:
        assert wait_until(lambda: not alive(pid), timeout=10), f"{pid} survived SIGKILL"
