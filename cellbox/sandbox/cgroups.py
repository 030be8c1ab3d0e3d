"""Per-unit cgroups under ``<hierarchy>/<parent>/<instance>/<unit>``: v1 and v2, one interface.

:func:`detect` finds the hierarchy this host mounts and returns a :class:`CgroupsV1` or a
:class:`CgroupsV2`; the sandbox uses only what :class:`Cgroups` declares.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from pathlib import Path

from cellbox.procfs import read_pids, read_text, write_text
from cellbox.sandbox.policy import Limits

log = logging.getLogger("cellbox.sandbox")

V2_ROOT = Path("/sys/fs/cgroup")


class Cgroups(ABC):
    """The controllers a unit gets (memory, pids, freezer), created, killed and removed."""

    version: int
    memory = False
    pids = False
    freezer = False

    def __init__(self, parents: dict[str, Path]) -> None:
        self.parents = parents  # v1: controller -> dir; v2: {"unified": dir}

    @property
    def kind(self) -> str:
        return f"cgroup-v{self.version}"

    @property
    def cleanup(self) -> str:
        """How ``kill`` stops a whole unit at once (for the isolation report)."""
        return f"{self.kind}-freeze"

    @abstractmethod
    def setup(self) -> None:
        """Create our parent directories and find which controllers are usable."""

    @abstractmethod
    def _limit(self, name: str, path: Path, limits: Limits) -> None:
        """Write ``limits`` into the new cgroup ``path`` of hierarchy ``name``."""

    @abstractmethod
    def _join_file(self, path: Path) -> Path:
        """The file a process writes "0" to, to join cgroup ``path``."""

    @abstractmethod
    def _oom_file(self, unit: str) -> Path: ...

    @abstractmethod
    def _freeze(self, unit: str) -> tuple[Path, str] | None:
        """Stop every task of the unit; the file and value that thaw it, if frozen."""

    def dirs(self, unit: str) -> dict[str, Path]:
        return {name: parent / unit for name, parent in self.parents.items()}

    def units(self) -> set[str]:
        found: set[str] = set()
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                found.update(entry.name for entry in os.scandir(parent) if entry.is_dir())
        return found

    def create(self, unit: str, limits: Limits) -> list[Path]:
        """Make the unit's cgroups with their limits; the files to write "0" to, to join."""
        joins: list[Path] = []
        for name, path in self.dirs(unit).items():
            for attempt in range(3):
                try:
                    path.mkdir()
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
                # someone removed our (empty) parent: set it up again
                self.setup()
            self._limit(name, path, limits)
            joins.append(self._join_file(path))
        return joins

    def oom_kills(self, unit: str) -> int:
        if not self.memory:
            return 0
        try:
            for line in read_text(self._oom_file(unit)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill(self, unit: str, timeout: float = 5.0) -> bool | None:
        """SIGKILL every process in the unit: True once all are gone, None if no cgroup."""
        dirs = [path for path in self.dirs(unit).values() if path.is_dir()]
        if not dirs:
            return None
        deadline = time.monotonic() + timeout
        thaw = self._freeze(unit)
        delay = 0.0005
        while True:
            pids = {pid for path in dirs for pid in read_pids(path / "cgroup.procs")}
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if thaw is not None:
                # Frozen tasks die of their pending SIGKILL as soon as they are thawed; thaw
                # on every round (a concurrent kill of the unit may have frozen it again).
                with contextlib.suppress(OSError):
                    write_text(*thaw)
            if not pids:
                return True
            if time.monotonic() > deadline:
                log.error("processes of %s survive SIGKILL: %s", unit, sorted(pids))
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove(self, unit: str) -> None:
        for path in self.dirs(unit).values():
            for attempt in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or attempt == 49:
                        log.warning("cannot remove cgroup %s: %s", path, exc)
                        break
                    time.sleep(0.01)

    def prune_siblings(self) -> None:
        """Remove empty instance directories that other (gone) servers left behind."""
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                for entry in os.scandir(parent.parent):
                    if entry.is_dir() and entry.path != str(parent):
                        with contextlib.suppress(OSError):
                            os.rmdir(entry.path)  # fails unless empty: safe

    def remove_parents(self) -> None:
        for parent in self.parents.values():
            # the instance directory, then the shared "cellbox" one if no one else uses it
            for path in (parent, parent.parent):
                try:
                    path.rmdir()
                except OSError:
                    break


class CgroupsV1(Cgroups):
    version = 1
    memsw = False  # memory+swap accounting (swapaccount=1)

    def setup(self) -> None:
        usable: dict[str, Path] = {}
        for controller, path in self.parents.items():
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.debug("cgroup v1 %s unusable: %s", controller, exc)
                continue
            usable[controller] = path
        self.parents = usable
        self.memory = "memory" in usable
        self.pids = "pids" in usable
        self.freezer = "freezer" in usable
        if self.memory:
            self.memsw = (usable["memory"] / "memory.memsw.limit_in_bytes").exists()

    def _limit(self, name: str, path: Path, limits: Limits) -> None:
        if name == "memory":
            write_text(path / "memory.limit_in_bytes", str(limits.memory_bytes))
            if self.memsw:
                write_text(path / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                write_text(path / "memory.swappiness", "0")
        elif name == "pids":
            write_text(path / "pids.max", str(limits.pids))

    def _join_file(self, path: Path) -> Path:
        # "0" written to "tasks" moves the writing thread itself, which skips the global
        # threadgroup lock (and its RCU grace period, ~10 ms here) that any cgroup.procs
        # write takes. The shell that writes it is single-threaded.
        return path / "tasks"

    def _oom_file(self, unit: str) -> Path:
        return self.parents["memory"] / unit / "memory.oom_control"

    def _freeze(self, unit: str) -> tuple[Path, str] | None:
        if not self.freezer or "freezer" not in self.parents:
            return None
        state = self.parents["freezer"] / unit / "freezer.state"
        try:
            write_text(state, "FROZEN")
        except OSError as exc:
            log.debug("cannot freeze %s: %s", unit, exc)
            return None
        deadline = time.monotonic() + 0.5
        with contextlib.suppress(OSError):
            while read_text(state).strip() != "FROZEN":
                if time.monotonic() > deadline:
                    break  # a task stuck in the kernel: kill what we can anyway
                time.sleep(0.0005)
        return state, "THAWED"


class CgroupsV2(Cgroups):
    version = 2
    freezer = True  # cgroup.freeze is core in v2 (kernel 5.2+)
    kill_file = False  # cgroup.kill (kernel 5.14+)

    def __init__(self, root: Path, parent: str) -> None:
        super().__init__({"unified": root.joinpath(*parent.split("/"))})
        self._root = root
        self._parent = parent

    @property
    def cleanup(self) -> str:
        return "cgroup.kill" if self.kill_file else super().cleanup

    def setup(self) -> None:
        wanted = {"memory", "pids"}
        levels = [self._root]
        for part in self._parent.split("/"):
            levels.append(levels[-1] / part)
        for level in levels[1:]:
            level.mkdir(exist_ok=True)
        enabled: set[str] = set(wanted)
        for level in levels[:-1]:
            available = set(read_text(level / "cgroup.controllers").split())
            active = set(read_text(level / "cgroup.subtree_control").split())
            for controller in sorted(wanted - active):
                if controller not in available:
                    enabled.discard(controller)
                    continue
                try:
                    write_text(level / "cgroup.subtree_control", f"+{controller}")
                except OSError as exc:
                    log.debug("cannot enable %s in %s: %s", controller, level, exc)
                    enabled.discard(controller)
        leaf = levels[-1]
        available = set(read_text(leaf / "cgroup.controllers").split())
        active = set(read_text(leaf / "cgroup.subtree_control").split())
        for controller in sorted((enabled & available) - active):
            try:
                write_text(leaf / "cgroup.subtree_control", f"+{controller}")
            except OSError:
                enabled.discard(controller)
        enabled &= available
        self.memory = "memory" in enabled
        self.pids = "pids" in enabled
        self.kill_file = (leaf / "cgroup.kill").exists()

    def _limit(self, name: str, path: Path, limits: Limits) -> None:
        if self.memory:
            write_text(path / "memory.max", str(limits.memory_bytes))
            if (path / "memory.swap.max").exists():
                write_text(path / "memory.swap.max", "0")
        if self.pids:
            write_text(path / "pids.max", str(limits.pids))

    def _join_file(self, path: Path) -> Path:
        return path / "cgroup.procs"

    def _oom_file(self, unit: str) -> Path:
        return self.parents["unified"] / unit / "memory.events"

    def _freeze(self, unit: str) -> tuple[Path, str] | None:
        path = self.parents["unified"] / unit
        with contextlib.suppress(OSError):
            if self.kill_file:
                write_text(path / "cgroup.kill", "1")
                return None
            write_text(path / "cgroup.freeze", "1")
            return path / "cgroup.freeze", "0"
        return None


def detect(parent: str) -> Cgroups | None:
    """The cgroup hierarchy usable on this host, with our parent created, or None."""
    v1: dict[str, Path] = {}
    v2 = False
    try:
        mounts = read_text("/proc/self/mounts").splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) < 4:
            continue
        where, fstype, options = Path(fields[1]), fields[2], fields[3].split(",")
        if fstype == "cgroup2" and where == V2_ROOT:
            v2 = True
        elif fstype == "cgroup":
            for controller in ("memory", "pids", "freezer"):
                if controller in options and controller not in v1:
                    v1[controller] = where
    tree: Cgroups
    if v2:
        tree = CgroupsV2(V2_ROOT, parent)
    elif v1:
        tree = CgroupsV1({c: m.joinpath(*parent.split("/")) for c, m in v1.items()})
    else:
        return None
    tree.setup()
    return tree
