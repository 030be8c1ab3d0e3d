"""Root without bubblewrap: root shell → (nsenter) → setpriv → env → the worker.

The worker runs as the sandbox uid in the unit's cgroups, but sees the host's file system
(partly masked when the mount helper covers directories it must not see).
"""

from __future__ import annotations

from pathlib import Path

from cellbox.sandbox.launchers.base import Launcher, UnitSetup, shell_prefix
from cellbox.sandbox.policy import split_for_root


class UidLauncher(Launcher):
    mode = "uid-only"

    def filesystem(self) -> str:
        return "host-partly-masked" if self.helper is not None else "host"

    def command(
        self, argv: list[str], *, setup: UnitSetup, workdir: Path, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        outer, late = split_for_root(env)
        # no pid namespace to take the worker down with the server: ask the kernel
        chain = self.privileged_chain(shell_prefix(self.caps, setup), pdeathsig=True)
        # as the sandbox uid, inside the helper namespace: enter the work directory there
        chain += [self.caps.env_tool, f"--chdir={workdir}", "--"]
        chain += [f"{k}={v}" for k, v in late.items()]
        return [*chain, *argv], outer
