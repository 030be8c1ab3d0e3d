"""What every language runtime provides to the server."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Runtime(ABC):
    """How to start a worker for one language, and how that language names things."""

    name: str  # canonical name reported by the API
    aliases: frozenset[str]
    interrupted_error: str  # error name the worker reports for an interrupted execution

    @abstractmethod
    def argv(self, fd: int, memory_limit_bytes: int) -> list[str]:
        """The worker's command line; ``fd`` is its protocol socket."""

    def env(self) -> dict[str, str]:
        """Variables the worker needs beyond the sandbox's minimal environment."""
        return {}

    def zygote_argv(self, control_fd: int) -> list[str] | None:
        """The command line of a zygote that forks this runtime's workers; None: no zygote.

        ``control_fd`` is its control socket (see ``cellbox.workers.zygote``).
        """
        return None

    def zygote_env(self) -> dict[str, str]:
        """Variables of the zygote and of the workers it forks."""
        return self.env()
