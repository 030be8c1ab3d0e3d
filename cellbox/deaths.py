"""Why a worker process ended, in one record: the single place where deaths are counted.

Every death of a worker that cellbox did not cause itself (a crash, a signal from outside,
the out-of-memory killer), and every kill cellbox had to do (code that ignored its
interrupt), is recorded here once, logged, and counted by runtime and cause in
:data:`counts` (read by ``GET /metrics``).
"""

from __future__ import annotations

import logging
import signal
from collections import Counter
from dataclasses import dataclass

log = logging.getLogger("cellbox.deaths")

# Causes, as counted.
SIGNAL, EXIT, OOM, UNKNOWN, STUBBORN = "signal", "exit", "oom", "unknown", "stubborn_timeout"
CAUSES = (SIGNAL, EXIT, OOM, UNKNOWN, STUBBORN)

counts: Counter[tuple[str, str]] = Counter()  # (runtime name, cause) -> deaths


@dataclass(frozen=True)
class Death:
    """How one worker process ended: a counted ``cause`` and the ``reason`` in words."""

    cause: str
    reason: str  # completes "the context's process ...", e.g. "was killed by SIGKILL"


def classify(code: int | None, oom: bool, heap_oom: bool, signal_offset: bool) -> Death:
    """A death from an exit status (``Popen.returncode`` style, ``None`` if unknown).

    ``signal_offset``: a status of 128+N means death by signal N (the sandbox's init
    reports its child's signal that way).
    """
    number = _signal_number(code, signal_offset)
    # ``oom`` counts any OOM kill in the context's cgroup, maybe of a child the code started
    # while the worker lived on; the OOM killer sends SIGKILL, so only that explains a death.
    if oom and (code is None or number == signal.SIGKILL):
        return Death(OOM, "was killed: out of memory")
    if heap_oom:
        return Death(OOM, "was killed: out of memory (the JavaScript heap limit was reached)")
    if code is None:
        return Death(UNKNOWN, "ended (its exit status is unknown)")
    if number is not None:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        reason = f"was killed by {name}"
        if number == signal.SIGKILL:
            reason += " (from outside, or out of memory)"
        return Death(SIGNAL, reason)
    return Death(EXIT, f"exited with code {code}")


def _signal_number(code: int | None, signal_offset: bool) -> int | None:
    """The signal that ended a process with this status, or None if it exited."""
    if code is None:
        return None
    if code < 0:
        return -code
    if code > 128 and signal_offset:
        return code - 128
    return None


def record(runtime: str, death: Death, owner: str, pid: int) -> None:
    """Count and log one death (``owner``: the context id, or what else held the worker)."""
    counts[(runtime, death.cause)] += 1
    log.warning("%s worker (pid %s) of %s %s", runtime, pid or "?", owner, death.reason)
