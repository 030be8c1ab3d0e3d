"""Python contexts: a worker embedding IPython's InteractiveShell."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from cellbox.runtimes.base import Runtime
from cellbox.workers.zygote import BLAS_THREAD_VARS

# Imported once by the zygote, so that every context starts with them in memory, shared.
PRELOAD = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot", "PIL.Image")
# A zygote must stay single-threaded to fork; its children inherit one-thread BLAS pools.
_ONE_THREAD = dict.fromkeys(BLAS_THREAD_VARS, "1")
# pandas imports pyarrow, whose jemalloc would start a background thread
_ONE_THREAD["JE_ARROW_MALLOC_CONF"] = "background_thread:false"


@dataclass(frozen=True)
class PythonRuntime(Runtime):
    def argv(self, fd: int, memory_limit_bytes: int) -> list[str]:
        return [sys.executable, "-m", "cellbox.workers.python", "--fd", str(fd)]

    def env(self) -> dict[str, str]:
        return {"MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def zygote_argv(self, control_fd: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cellbox.workers.zygote",
            "--control",
            str(control_fd),
            "--preload",
            ",".join(PRELOAD),
        ]

    def zygote_env(self) -> dict[str, str]:
        return {**self.env(), **_ONE_THREAD}


PYTHON = PythonRuntime(
    name="python",
    aliases=frozenset({"python", "py", "python3"}),
    interrupted_error="KeyboardInterrupt",
)
