"""The soak's view of the host: the server's sandbox units, its memory and fds, and chaos.

cellbox puts every worker (and each zygote) in a unit: cgroups under
``/sys/fs/cgroup/<controller>/cellbox/<instance>/<unit>`` (v2: one tree), where
``<instance>`` is the first 12 hex digits of the SHA-256 of the state directory's absolute
path; worker units are named ``w<server pid>-N``, zygotes ``zygote<server pid>-N``.
Reading and signalling these needs root, as the server itself does.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path | str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace("\0", " ")


def is_zombie(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return not stat or stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class Host:
    """The sandbox units, memory and fds of one server (by its pid and state directory)."""

    def __init__(self, server_pid: int, state_dir: Path) -> None:
        self.server_pid = server_pid
        self.state_dir = Path(os.path.abspath(state_dir))
        instance = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        self.instance_dirs = [
            d / "cellbox" / instance
            for d in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()]
            if (d / "cellbox").is_dir() or d == CGROUP_ROOT
        ]

    def unit_dirs(self) -> dict[str, list[Path]]:
        """Unit name -> its cgroup directories (one per hierarchy)."""
        units: dict[str, list[Path]] = {}
        for instance in self.instance_dirs:
            try:
                entries = list(os.scandir(instance))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir():
                    units.setdefault(entry.name, []).append(Path(entry.path))
        return units

    def units(self) -> dict[str, set[int]]:
        """Unit name -> the live processes in it."""
        found: dict[str, set[int]] = {}
        for name, dirs in self.unit_dirs().items():
            pids: set[int] = set()
            for directory in dirs:
                pids.update(int(p) for p in _read(directory / "cgroup.procs").split())
            found[name] = {p for p in pids if not is_zombie(p)}
        return found

    @staticmethod
    def describe(pids: set[int]) -> list[str]:
        """``pid state command`` of each process, for a report."""
        out = []
        for pid in sorted(pids):
            stat = _read(f"/proc/{pid}/stat")
            state = stat.rsplit(")", 1)[1].split()[0] if stat else "?"
            out.append(f"{pid} {state} {cmdline(pid)[:60]}")
        return out

    def server_rss_kb(self) -> int:
        for line in _read(f"/proc/{self.server_pid}/status").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def server_fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.server_pid}/fd"))
        except OSError:
            return 0

    def workdirs(self) -> list[str]:
        try:
            return sorted(os.listdir(self.state_dir / "contexts"))
        except OSError:
            return []

    def mounts(self) -> list[str]:
        lines = _read("/proc/self/mountinfo").splitlines()
        return [line.split()[4] for line in lines if str(self.state_dir) in line]

    def stray_processes(self) -> list[int]:
        """Live processes working in a context directory of this server, outside any unit."""
        in_units = set().union(*self.units().values()) if self.unit_dirs() else set()
        contexts = str(self.state_dir / "contexts")
        stray = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in in_units:
                continue
            try:
                cwd = os.readlink(f"/proc/{name}/cwd")
            except OSError:
                continue
            if cwd.startswith(contexts) and not is_zombie(int(name)):
                stray.append(int(name))
        return stray

    def leftovers(self) -> list[str]:
        """Everything of this server still on the host (after it stopped: must be empty)."""
        found = [f"cgroup {d}" for d in self.instance_dirs if d.exists()]
        found += [f"work directory {w}" for w in self.workdirs()]
        found += [f"mount {m}" for m in self.mounts()]
        found += [f"process {p}: {cmdline(p)[:80]}" for p in self.stray_processes()]
        return found


class Chaos(threading.Thread):
    """Every ``period`` seconds (on average), one blow at the server's workers."""

    def __init__(self, host: Host, period: float, seed: int) -> None:
        super().__init__(name="chaos", daemon=True)
        self.host = host
        self.period = period
        self.random = random.Random(seed)
        self.done = threading.Event()
        self.blows: Counter[str] = Counter()
        self._stopped: list[int] = []

    def run(self) -> None:
        actions = [
            (self.kill_python_worker, 4),
            (self.kill_typescript_worker, 2),
            (self.kill_any_process, 1),
            (self.kill_zygote, 1),
            (self.stop_worker, 2),
        ]
        weights = [w for _, w in actions]
        while not self.done.wait(self.random.expovariate(1 / self.period)):
            action = self.random.choices([a for a, _ in actions], weights)[0]
            self.blows[action.__name__] += action()
            self._continue_some()
        for pid in self._stopped:
            self._signal(pid, signal.SIGCONT)

    def _workers(self, needle: str) -> list[int]:
        pids = []
        for name, procs in self.host.units().items():
            if name.startswith("w"):
                pids += [p for p in procs if needle in cmdline(p)]
        return pids

    def _signal(self, pid: int, sig: int) -> int:
        try:
            os.kill(pid, sig)
            return 1
        except (ProcessLookupError, PermissionError):
            return 0

    def _hit(self, pids: list[int], sig: int = signal.SIGKILL) -> int:
        return self._signal(self.random.choice(pids), sig) if pids else 0

    def kill_python_worker(self) -> int:
        return self._hit(self._workers("python"))

    def kill_typescript_worker(self) -> int:
        return self._hit(self._workers("node"))

    def kill_any_process(self) -> int:
        """Any process of any worker unit: a worker, its init, its setup process, a child."""
        pids = [
            p for name, procs in self.host.units().items() if name.startswith("w") for p in procs
        ]
        return self._hit(pids)

    def kill_zygote(self) -> int:
        units = self.host.units()
        pids = [p for name, procs in units.items() if name.startswith("zygote") for p in procs]
        return sum(self._signal(p, signal.SIGKILL) for p in pids) and 1

    def stop_worker(self) -> int:
        """SIGSTOP a worker; it gets SIGCONT later, or never (then it is killed for its
        timeout, or its context is deleted)."""
        pids = self._workers("python") + self._workers("node")
        if not pids:
            return 0
        pid = self.random.choice(pids)
        if self._signal(pid, signal.SIGSTOP) and self.random.random() < 0.7:
            self._stopped.append(pid)
        return 1

    def _continue_some(self) -> None:
        keep = []
        for pid in self._stopped:
            if self.random.random() < 0.5:
                self._signal(pid, signal.SIGCONT)
            else:
                keep.append(pid)
        self._stopped = keep


def settle(predicate, timeout: float, step: float = 0.2) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
