"""A sandbox's units: each worker's processes, set up, released and accounted for as one.

A unit is registered and gets its cgroups afresh (:meth:`Units.prepare`) before its launch
chain runs; :meth:`Units.release` kills everything it started (by cgroup, else by pidfile,
tree and tag) and keeps whether the memory cgroup OOM-killed it. :meth:`Units.clean_stale`
removes what a previous server with the same state directory left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from pathlib import Path

from cellbox import procfs
from cellbox.sandbox import cgroups as cgroup_trees
from cellbox.sandbox import cleanup, policy
from cellbox.sandbox.cgroups import Cgroups
from cellbox.sandbox.launchers import Launcher, UnitSetup
from cellbox.sandbox.policy import Limits, SandboxError, check_unit
from cellbox.sandbox.workdirs import StateLayout

log = logging.getLogger("cellbox.sandbox")

OOM_RECORDS = 4096  # released units whose OOM verdict is kept; the older half goes past it


def instance_name(state_dir: Path) -> str:
    """The cgroup directory of one server instance: servers with other state dirs differ."""
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]


def detect_cgroups(parent: str, state_dir: Path) -> Cgroups | None:
    """The host's cgroup hierarchy with this instance's parent created, or None."""
    try:
        return cgroup_trees.detect(f"{parent}/{instance_name(state_dir)}")
    except OSError as exc:
        log.warning("cgroups unusable: %s", exc)
        return None


class Units:
    """The units of one sandbox: their cgroups (None: none usable), records and leftovers."""

    def __init__(self, layout: StateLayout, limits: Limits, enabled: bool) -> None:
        self.layout = layout
        self.limits = limits
        self.enabled = enabled
        self.cgroups: Cgroups | None = None
        # Also kill the processes tagged with a unit: no private pid namespace holds them
        # (true until a launcher with a private view is chosen).
        self.kill_tagged = True
        self._lock = threading.Lock()
        self._oom: dict[str, bool] = {}
        self._live: set[str] = set()
        self._lingering: set[str] = set()  # released units whose cgroups outlived the kill

    def clean_stale(self) -> None:
        """Kill and remove what a previous server with this state directory left behind."""
        if self.cgroups is not None:
            self.cgroups.prune_siblings()
            for unit in self.cgroups.units():
                log.warning("removing stale sandbox unit %s", unit)
                self.cgroups.kill(unit)
                self.cgroups.remove(unit)
        for entry in os.scandir(self.layout.run):
            if entry.name.endswith(".pid"):
                cleanup.kill_pidfile(Path(entry.path), entry.name[:-4], tagged=True)
        for path in self.layout.stale_workdirs():
            log.warning("removing stale work directory %s", path)
            self.layout.remove_workdir(path.name)

    def prepare(self, unit: str) -> list[Path]:
        """Register ``unit`` and make its cgroups afresh; the files to write "0" to."""
        with self._lock:
            self._live.add(unit)
            self._oom.pop(unit, None)
        if self.cgroups is None:
            return []
        if any(path.exists() for path in self.cgroups.dirs(unit).values()):
            self.cgroups.kill(unit)
            self.cgroups.remove(unit)
        try:
            return self.cgroups.create(unit, self.limits)
        except OSError as exc:
            self.cgroups.remove(unit)
            raise SandboxError(f"cannot create cgroups for {unit}: {exc}") from exc

    def setup(self, launcher: Launcher, unit: str, workdir: Path, own_network: bool) -> UnitSetup:
        """Prepare ``unit``; what its launch chain does before the worker runs."""
        return UnitSetup(
            pidfile=self.layout.pidfile(unit),
            cgroup_files=self.prepare(unit),
            rlimits=self.rlimits(launcher.caps.uid),
            chdir=workdir if launcher.chdir_in_setup() else None,
            net_namespace=own_network and launcher.caps.root,
        )

    def rlimits(self, uid: int) -> dict[str, int]:
        """A unit's rlimits: the policy's, standing in for the cgroups this host lacks."""
        cg = self.cgroups
        memory = self.enabled and cg is not None and cg.memory
        pids = self.enabled and cg is not None and cg.pids
        threads = 0 if pids else procfs.threads_of_uid(uid)
        wanted = policy.rlimits(
            self.limits, memory_cgroup=memory, pids_cgroup=pids, uid_threads=threads
        )
        return policy.within_hard_limits(wanted)

    def release(self, unit: str) -> None:
        """Kill every process of ``unit`` and remove its cgroups. Idempotent, never raises."""
        try:
            check_unit(unit)
        except ValueError:
            return
        oom = False
        gone: bool | None = None
        try:
            if self.cgroups is not None:
                oom = self.cgroups.oom_kills(unit) > 0
                gone = self.cgroups.kill(unit)
                self.cgroups.remove(unit)
                self._remove_lingering(also=unit)
        except Exception:
            log.exception("releasing cgroups of %s", unit)
        try:
            pidfile = self.layout.pidfile(unit)
            if gone:
                with contextlib.suppress(FileNotFoundError):
                    pidfile.unlink()
            else:
                cleanup.kill_pidfile(pidfile, unit, tagged=self.kill_tagged)
        except Exception:
            log.exception("killing processes of %s", unit)
        with self._lock:
            self._oom[unit] = self._oom.get(unit, False) or oom
            self._live.discard(unit)
            if len(self._oom) > OOM_RECORDS:
                for stale in list(self._oom)[: OOM_RECORDS // 2]:
                    del self._oom[stale]

    def oom_killed(self, unit: str) -> bool:
        """Did the memory cgroup OOM-kill a process of ``unit`` (also after ``release``)?"""
        with self._lock:
            if self._oom.get(unit):
                return True
        if self.cgroups is None:
            return False
        try:
            check_unit(unit)
        except ValueError:
            return False
        return self.cgroups.oom_kills(unit) > 0

    def _remove_lingering(self, also: str) -> None:
        """Retry the cgroups of units whose processes took longer to die than a release
        waited (a fork bomb on a loaded host); ``also``: the unit just released."""
        assert self.cgroups is not None
        with self._lock:
            self._lingering.add(also)
            units = set(self._lingering)
        for unit in units:
            if unit != also and self.cgroups.kill(unit, timeout=0.2):
                self.cgroups.remove(unit)
            if not any(path.exists() for path in self.cgroups.dirs(unit).values()):
                with self._lock:
                    self._lingering.discard(unit)

    def release_all(self) -> None:
        """Release every registered unit and every unit in our cgroups."""
        with self._lock:
            units = set(self._live)
        if self.cgroups is not None:
            units |= self.cgroups.units()
        for unit in units:
            self.release(unit)

    def remove_parents(self) -> None:
        """Remove this instance's cgroup directories (after ``release_all``)."""
        if self.cgroups is not None:
            self.cgroups.remove_parents()


def environment(launcher: Launcher, workdir: Path, unit: str) -> dict[str, str]:
    """A unit's base environment under ``launcher``; makes its TMPDIR where it is shared."""
    caps = launcher.caps
    tmp = launcher.tmp_dir(workdir)
    if not launcher.private_view:
        os.makedirs(tmp, mode=0o700, exist_ok=True)
        if caps.uid != os.geteuid():
            os.chown(tmp, caps.uid, caps.gid)
    return policy.environment(
        user=caps.user,
        home=workdir,
        tmp=tmp,
        bin_dirs=list(caps.bin_dirs),
        # lets release() find detached processes when no cgroup or pid namespace can
        unit_tag=None if launcher.private_view else unit,
    )
