"""Python contexts: a worker embedding IPython's InteractiveShell."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from cellbox.runtimes.base import Runtime


@dataclass(frozen=True)
class PythonRuntime(Runtime):
    def argv(self, fd: int, memory_limit_bytes: int) -> list[str]:
        return [sys.executable, "-m", "cellbox.workers.python_worker", "--fd", str(fd)]

    def env(self) -> dict[str, str]:
        return {"MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


PYTHON = PythonRuntime(
    name="python",
    aliases=frozenset({"python", "py", "python3"}),
    interrupted_error="KeyboardInterrupt",
)
