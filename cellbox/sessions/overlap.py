"""Whether an execution runs alone on this node, for the worker's CPU placement.

A worker asked to (``keep_cpu`` in its execute frame) waits for its next execution pinned
to the CPU it ran this one on (see ``cellbox.workers.python.cpu_home``). That helps a lone
context, whose runs are a relay with the server, and would crowd CPUs when several run at
once: the scheduler must then be free to spread the workers. So it is asked only while no
other execution runs, and not until ``CALM_S`` after two last ran at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CALM_S = 0.1


class Overlap:
    """Counts the executions running on the node (between ``begin`` and ``end``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.running = 0
        self._clock = clock
        self._crowded_until = 0.0

    def begin(self) -> bool:
        """One more runs now; True if it runs alone, and the node has been calm."""
        self.running += 1
        now = self._clock()
        if self.running > 1:
            self._crowded_until = now + CALM_S
            return False
        return now >= self._crowded_until

    def end(self) -> None:
        self.running -= 1
