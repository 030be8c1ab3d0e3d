"""No privileges to drop (the server is not root): shell → setpriv (parent death) → worker."""

from __future__ import annotations

from pathlib import Path

from cellbox.sandbox.launchers.base import Launcher, UnitSetup, shell_prefix


class DirectLauncher(Launcher):
    mode = "direct"

    def chdir_in_setup(self) -> bool:
        return True

    def command(
        self, argv: list[str], *, setup: UnitSetup, workdir: Path, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        prefix = shell_prefix(self.caps, setup)
        if self.caps.setpriv is not None:
            # no pid namespace to take the worker down with the server: ask the kernel
            prefix += [self.caps.setpriv, "--pdeathsig=KILL", "--"]
        return [*prefix, *argv], env
