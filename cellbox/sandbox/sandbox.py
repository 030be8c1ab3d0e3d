"""The sandbox: starts workers isolated from the server, the host and each other.

One instance per server and state directory; the one object the rest of the server holds.
Constructing it does nothing; :meth:`open` reads the host (:mod:`.probe`), prepares the
state directory (:mod:`.workdirs`) and the cgroups, cleans what a previous server left
(:mod:`.units`), and chooses the launcher (:mod:`.launcher_choice`): bubblewrap, else the
uid drop alone, else direct. Anything missing (not root, no bwrap, no cgroups) degrades to
what is possible, says so in a loud warning and in :meth:`isolation` (:mod:`.report`).

``command`` wraps a worker's argv for ``placement.spawn(*argv, env=env,
pass_fds=fds, start_new_session=True)``; ``release`` kills everything the unit started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cellbox.packages import layout as package_layout
from cellbox.sandbox import policy, report, units
from cellbox.sandbox.launcher_choice import LauncherChoice
from cellbox.sandbox.launchers import BwrapLauncher, Launcher, ZygoteLauncher
from cellbox.sandbox.policy import ForkSpec, Limits, SandboxError, check_unit
from cellbox.sandbox.probe import Capabilities, read_host
from cellbox.sandbox.quota import DiskQuota
from cellbox.sandbox.units import Units
from cellbox.sandbox.workdirs import StateLayout


class StateDirInUse(RuntimeError):
    """Another live server holds the state directory."""


class Sandbox:
    """Starts and releases units: the processes of one worker, isolated as one."""

    def __init__(
        self,
        state_dir: Path,
        limits: Limits,
        network: str,
        enabled: bool = True,
        *,
        uid: int | None = None,
        cgroup_parent: str = "cellbox",
        extra_ro_paths: Iterable[str | Path] = (),
        cache_dir: Path | None = None,
        disk_limit_bytes: int = 2 << 30,
    ) -> None:
        self.limits = limits
        self.network = network  # off | public | host, as cellbox.sandbox.network settled it
        self.enabled = enabled
        self.layout = StateLayout(state_dir)
        self.state_dir = self.layout.state_dir
        self.units = Units(self.layout, limits, enabled)
        self._uid_wanted = uid
        self._cgroup_parent = cgroup_parent
        self._extra = [os.path.abspath(p) for p in extra_ro_paths]
        self._cache = Path(
            os.path.abspath(cache_dir or os.path.expanduser("~/.cache/cellbox"))
        ).joinpath(f"py{sys.version_info.major}{sys.version_info.minor}")
        self._warnings: list[str] = []
        self._choice = LauncherChoice(self, self._cache, self._warnings)
        self._lock_fd = -1
        self.caps: Capabilities | None = None
        self._launcher: Launcher | None = None
        self._zygote: ZygoteLauncher | None = None
        self.quota = DiskQuota(disk_limit_bytes)
        self.wheelhouse: Path | None = None  # trusted wheels, read-only in every context

    # ------------------------------------------------------------------ set-up

    def open(self) -> Sandbox:
        """Read the host, prepare the state directory and cgroups, choose the launcher."""
        if os.geteuid() == 0:  # contexts run as another uid: they can read it, never write it
            self._cache.mkdir(parents=True, exist_ok=True)
            self.wheelhouse = package_layout.make_wheelhouse(self._cache)
            self._extra.append(str(self.wheelhouse))
        caps = read_host(self._uid_wanted, self._extra)
        self.caps = caps
        self.layout.make(root=caps.root, user=caps.user, uid=caps.uid, gid=caps.gid)
        self._own_state_dir()
        if self.enabled and caps.root:
            self.units.cgroups = units.detect_cgroups(self._cgroup_parent, self.state_dir)
            if self.units.cgroups is None:
                self._warnings.append("no usable cgroup hierarchy")
        self.units.clean_stale()
        self.quota.setup(self.layout.contexts, self.layout.own / "contexts.img")
        if not self.quota.enforced:
            self._warnings.append(f"disk quota per context not enforced: {self.quota.reason}")
        self._launcher = self._choice.choose(caps)
        self.units.kill_tagged = not self._launcher.private_view
        self.caps = self._launcher.caps
        if isinstance(self._launcher, BwrapLauncher):
            self._zygote = ZygoteLauncher(self._launcher)
        report.announce(self.isolation())
        return self

    def _own_state_dir(self) -> None:
        """Take the state directory's lock for as long as this server runs, or refuse: a
        second server on it would take the first one's units, cgroups and disk volume as a
        dead server's leftovers, and the first one's shutdown would take the second's."""
        fd = os.open(self.layout.run / "owner.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise StateDirInUse(
                f"another cellbox server{pid} is using the state directory {self.state_dir}; "
                "stop it first, or give this server a state directory of its own (--state-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    # ------------------------------------------------------------------ public API

    @property
    def launcher(self) -> Launcher:
        assert self._launcher is not None, "Sandbox.open() first"
        return self._launcher

    @property
    def wraps_exit_status(self) -> bool:
        """True when the worker's death by signal N shows as exit status 128+N (bwrap)."""
        return self.launcher.wraps_exit_status

    def isolation(self) -> dict[str, Any]:
        """What this host allowed; what ``GET /info`` reports."""
        return report.isolation(
            launcher=self.launcher,
            cgroups=self.units.cgroups,
            helper=self._choice.helper,
            limits=self.limits,
            network=self.network,
            enabled=self.enabled,
            warnings=self._warnings,
            setup_ms=self._choice.setup_ms,
            disk=self.quota.report(),
        )

    def create_workdir(self, unit: str) -> Path:
        """A fresh private work directory for a context, owned by the sandbox uid, 0700."""
        assert self.caps is not None
        return self.layout.create_workdir(unit, self.caps.uid, self.caps.gid, self.quota.create_dir)

    @property
    def context_ids(self) -> tuple[int, int]:
        """The uid and gid every context's code runs as (and its file work is done as)."""
        assert self.caps is not None
        return self.caps.uid, self.caps.gid

    def remove_workdir(self, unit: str) -> None:
        """Delete a context's work directory (never follows links the user made)."""
        self.layout.remove_workdir(unit)

    def command(
        self,
        argv: list[str],
        *,
        unit: str,
        workdir: Path,
        env: dict[str, str],
        own_network: bool | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """Wrap ``argv`` so it runs sandboxed as ``unit``; returns (argv, environment).

        Creates the unit's cgroups (a stale unit of the same name is killed first). Spawn
        the result with ``pass_fds`` set to the worker's own fds, ``start_new_session=True``
        and a closed-by-default fd set; ``cwd`` does not matter. Inside, the working
        directory is ``workdir`` at its own absolute path. ``own_network``: root makes the
        unit a network namespace of its own (None: under ``--network public`` only).
        """
        return self.launch_command(
            self.launcher, argv, unit=unit, workdir=workdir, env=env, own_network=own_network
        )

    def launch_command(
        self,
        launcher: Launcher,
        argv: list[str],
        *,
        unit: str,
        workdir: Path,
        env: dict[str, str],
        own_network: bool | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """``command`` with any launcher: the chosen one, or one the choice is trying."""
        check_unit(unit)
        if not argv:
            raise ValueError("empty argv")
        workdir = self.layout.checked_workdir(workdir)
        full_env = self._worker_environment(launcher, workdir, unit, env)
        if own_network is None:
            own_network = self.network == "public"
        setup = self.units.setup(launcher, unit, workdir, own_network)
        return launcher.command(argv, setup=setup, workdir=workdir, env=full_env)

    @property
    def supports_zygote(self) -> bool:
        """Can workers be forked by a zygote (see ``zygote_command``) at full isolation?"""
        cg = self.units.cgroups
        return (
            self._zygote is not None
            and self.isolation()["level"] == "full"
            and self.launcher.caps.root
            and cg is not None
            and cg.version == 1  # v2 would refuse the move across the zygote's cgroup ns
            and cg.freezer
        )

    def zygote_command(
        self, argv: list[str], *, unit: str, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """Like ``command`` but for a zygote that forks sandboxed workers itself.

        Each child confines itself with a ``fork_spec`` (see ``cellbox.workers.zygote.confine``).
        Needs ``supports_zygote``.
        """
        check_unit(unit)
        if not self.supports_zygote or self._zygote is None:
            raise SandboxError("this host's sandbox cannot run a zygote")
        contexts = self.layout.contexts
        full_env = units.environment(self._zygote, contexts, unit)
        full_env["HOME"] = policy.PRIVATE_TMP
        full_env.update(policy.checked_env(env))
        # root makes no network namespace for a zygote: its children get theirs (ForkSpec)
        setup = self.units.setup(self._zygote, unit, contexts, own_network=False)
        return self._zygote.command(argv, setup=setup, workdir=contexts, env=full_env)

    def fork_spec(self, unit: str, workdir: Path, env: dict[str, str]) -> ForkSpec:
        """Create ``unit``'s cgroups; what a zygote child needs to become its worker."""
        check_unit(unit)
        if self._zygote is None:
            raise SandboxError("this host's sandbox cannot run a zygote")
        workdir = self.layout.checked_workdir(workdir)
        full_env = self._worker_environment(self._zygote, workdir, unit, env)
        cgroup_files = self.units.prepare(unit)
        return self._zygote.fork_spec(
            cgroup_files, full_env, self.units.rlimits(self._zygote.caps.uid)
        )

    def release(self, unit: str) -> None:
        """Kill every process of ``unit`` and remove its cgroups. Idempotent, never raises."""
        self.units.release(unit)

    def oom_killed(self, unit: str) -> bool:
        """Did the memory cgroup OOM-kill a process of ``unit`` (also after ``release``)?"""
        return self.units.oom_killed(unit)

    def close(self) -> None:
        """Kill every unit this sandbox started and stop its helpers (server shutdown)."""
        self.units.release_all()
        if self._choice.helper is not None:
            self._choice.helper.close()
        if self._choice.fonts is not None:
            self._choice.fonts.close()
        self.units.remove_parents()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self._lock_fd = -1
        self.quota.close()

    # ------------------------------------------------------------------ internals

    def _worker_environment(
        self, launcher: Launcher, workdir: Path, unit: str, env: dict[str, str]
    ) -> dict[str, str]:
        """A worker's environment: the unit's, its packages', then the caller's (checked)."""
        full_env = units.environment(launcher, workdir, unit)
        full_env.update(package_layout.environment(workdir, full_env["PATH"], self.wheelhouse))
        full_env.update(policy.checked_env(env))
        return full_env
