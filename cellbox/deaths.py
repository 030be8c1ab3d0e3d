"""Why a worker process ended, in one record: the single place where deaths are counted.

Every death of a worker that cellbox did not cause itself (a crash, a signal from outside,
the out-of-memory killer), and every kill cellbox had to do (code that ignored its
interrupt), is recorded here once, logged, and counted by runtime and cause in
:data:`counts` (read by ``GET /metrics``).
"""

from __future__ import annotations

import logging
import re
import signal
from collections import Counter
from dataclasses import dataclass

log = logging.getLogger("cellbox.deaths")

# Causes, as counted.
SIGNAL, EXIT, OOM, UNKNOWN, STUBBORN = "signal", "exit", "oom", "unknown", "stubborn_timeout"
MISBEHAVED = "misbehaved"  # killed by cellbox: it broke the worker protocol
CAUSES = (SIGNAL, EXIT, OOM, UNKNOWN, STUBBORN, MISBEHAVED)

counts: Counter[tuple[str, str]] = Counter()  # (runtime name, cause) -> deaths


@dataclass(frozen=True)
class Death:
    """How one worker process ended: a counted ``cause`` and the ``reason`` in words."""

    cause: str
    reason: str  # completes "the context's process ...", e.g. "was killed by SIGKILL"
    last_output: str = ""  # its last lines on stderr (whole lines, see ``last_words``)

    def told(self, message: str) -> str:
        """``message`` (a sentence without its full stop, saying what the death means),
        then the last output, if any."""
        if not self.last_output:
            return f"{message}."
        return f"{message}. Its last output:\n{self.last_output}"

    def with_output(self) -> str:
        """The reason, then the last output if any (for a log line or a start failure)."""
        if not self.last_output:
            return self.reason
        return f"{self.reason}; last output:\n{self.last_output}"


# What Node prints when it aborts (process.abort(), a fatal error): a native and a
# JavaScript stack trace, each a header and numbered frames of the runtime's internals.
_DUMP_HEADERS = ("----- Native stack trace -----", "----- JavaScript stack trace -----")
_DUMP_FRAME = re.compile(r"\s*\d+: ")
LAST_WORDS_LIMIT = 500


def last_words(stderr: str, limit: int = LAST_WORDS_LIMIT) -> str:
    """The end of a dead worker's stderr worth showing: Node's stack dumps left out, then
    as many whole last lines as fit in ``limit`` characters (a longer last line is cut at
    its start, marked with "…")."""
    lines: list[str] = []
    in_dump = False
    for line in stderr.splitlines():
        if line.strip() in _DUMP_HEADERS:
            in_dump = True
        elif not (in_dump and (not line.strip() or _DUMP_FRAME.match(line))):
            in_dump = False
            lines.append(line.rstrip())
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) > limit:
            if not kept:
                kept.append("…" + line[len(line) - limit + 1 :])
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept)).strip()


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
        elif number == signal.SIGABRT:
            reason += " (it aborted: process.abort(), os.abort() or a fatal error of the runtime)"
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
    log.warning("%s worker (pid %s) of %s %s", runtime, pid or "?", owner, death.with_output())
