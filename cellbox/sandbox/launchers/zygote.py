"""A zygote's chain, and what each child it forks needs to confine itself to one unit.

The zygote's bubblewrap leaves out the pid namespace (children must outlive a zygote that
dies, and it reaps them from there) and ``--disable-userns`` (each child makes its own user
namespace), shows the host's /proc instead of a fresh one, and binds the whole contexts
directory writable. Each child then confines itself (:mod:`cellbox.workers.zygote.confine`) by
the :class:`ForkSpec` the server sends it, which follows the same policy as bubblewrap.
"""

from __future__ import annotations

from pathlib import Path

from cellbox.sandbox.launchers.base import Launcher, UnitSetup
from cellbox.sandbox.launchers.bwrap import BwrapLauncher, bwrap_args
from cellbox.sandbox.policy import ForkSpec, kept_below_tmp


class ZygoteLauncher(Launcher):
    mode = "bubblewrap"
    private_view = True
    seccomp = True  # its chain is BwrapLauncher.chain
    wraps_exit_status = True

    def __init__(self, bwrap: BwrapLauncher) -> None:
        super().__init__(bwrap.caps, bwrap.helper)
        self._bwrap = bwrap
        self._args = bwrap_args(bwrap.caps, bwrap.layout, bwrap.limits, bwrap.network, zygote=True)

    def command(
        self, argv: list[str], *, setup: UnitSetup, workdir: Path, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """The zygote's chain; ``workdir`` is the contexts directory, all of it."""
        binds = ["--bind", str(workdir), str(workdir)]
        return self._bwrap.chain(
            argv, setup=setup, args=self._args, binds=binds, chdir=Path("/"), env=env
        )

    def fork_spec(
        self, cgroup_files: list[Path], env: dict[str, str], rlimits: dict[str, int]
    ) -> ForkSpec:
        return ForkSpec(
            cgroup_files=cgroup_files,
            env=env,
            rlimits=rlimits,
            network=self._bwrap.network == "host",  # else each child makes its own
            tmpfs_size=self._bwrap.limits.tmpfs_bytes,
            keep=kept_below_tmp(list(self.caps.runtime_paths)),
        )
