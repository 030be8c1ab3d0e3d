"""The one way async code calls the sandbox: every blocking call runs in a thread.

The sandbox makes cgroups, work directories and processes with plain system calls (some
wait for a cgroup to empty); none of that may run on the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cellbox.sandbox import ForkSpec, Limits, Sandbox


class AsyncSandbox:
    """:class:`~cellbox.sandbox.Sandbox` with awaitable, off-loop versions of its calls."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    # What is known after ``open`` and costs no I/O.
    @property
    def limits(self) -> Limits:
        return self.sandbox.limits

    @property
    def wraps_exit_status(self) -> bool:
        return self.sandbox.wraps_exit_status

    @property
    def supports_zygote(self) -> bool:
        return self.sandbox.supports_zygote

    @property
    def context_ids(self) -> tuple[int, int]:
        return self.sandbox.context_ids

    def isolation(self) -> dict[str, Any]:
        return self.sandbox.isolation()

    @property
    def wheelhouse(self) -> Path | None:
        return self.sandbox.wheelhouse

    async def create_workdir(self, unit: str) -> Path:
        return await asyncio.to_thread(self.sandbox.create_workdir, unit)

    async def remove_workdir(self, unit: str) -> None:
        await asyncio.to_thread(self.sandbox.remove_workdir, unit)

    async def command(self, argv: list[str], **options: Any) -> tuple[list[str], dict[str, str]]:
        """:meth:`Sandbox.command <cellbox.sandbox.Sandbox.command>` off the loop (the same
        keyword options: ``unit``, ``workdir``, ``env``, ``own_network``)."""
        return await asyncio.to_thread(self.sandbox.command, argv, **options)

    async def zygote_command(
        self, argv: list[str], *, unit: str, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        return await asyncio.to_thread(self.sandbox.zygote_command, argv, unit=unit, env=env)

    async def fork_spec(self, unit: str, workdir: Path, env: dict[str, str]) -> ForkSpec:
        return await asyncio.to_thread(self.sandbox.fork_spec, unit, workdir, env)

    async def release(self, unit: str) -> None:
        await asyncio.to_thread(self.sandbox.release, unit)

    async def oom_killed(self, unit: str) -> bool:
        return await asyncio.to_thread(self.sandbox.oom_killed, unit)

    async def close(self) -> None:
        await asyncio.to_thread(self.sandbox.close)
