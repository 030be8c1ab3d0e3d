"""The isolation rules, written once: what a context sees, may use, and runs with.

Pure: no file system, no processes. The bubblewrap argv builder
(:mod:`cellbox.sandbox.launchers.bwrap`), the zygote's in-sandbox confinement
(:mod:`cellbox.workers.zygote.confine`) and the ``/info`` report all read their rules from here.
"""

from __future__ import annotations

import re
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cellbox import exit_codes
from cellbox.sandbox.netpolicy import DNS_ADDRESS

USER_NAME = "cellbox"
HOSTNAME = "cellbox"
# Without a "cellbox" user, the first uid in this range that names no user or group. It
# sits below systemd's dynamic range (61184-65519) and far from subordinate-id ranges.
UID_RANGE = range(61000, 61184)
SHELL = "/bin/sh"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin"
OOM_SCORE_ADJ = 300  # workers go before the server when the whole host runs out of memory

# Exit statuses of the processes that set a worker up (the shell, the zygote's children).
EXIT_SETUP_FAILED = exit_codes.SETUP_FAILED
EXIT_CANNOT_FORK = exit_codes.INTERNAL_ERROR

_UNIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")

# --------------------------------------------------------------------------- the file system

# What the sandbox shows of the host's /etc: what the dynamic loader, name resolution, TLS,
# time zones, fonts and MIME types need at run time (each entry costs a mount per worker
# start). The SYNTHESIZED ones are written by the server (see ``etc_files``).
ETC_ENTRIES = (
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
    "pip.conf",  # where pip (and so the context's installs) gets packages from
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
# A distribution's own Python reads its sitecustomize from /etc.
ETC_SYSTEM_PYTHON = ("python3", f"python3.{sys.version_info.minor}")
SYNTHESIZED_ETC = ("passwd", "group", "hosts", "resolv.conf")
# Top-level system directories (or the symlinks to /usr a merged-/usr system has), read-only.
TOP_LEVEL = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
PRIVATE_TMP = "/tmp"
# Mount options of the private mounts a zygote child makes itself (bwrap makes the same).
TMP_MODE = "0755"
SHM_MODE = "1777"
DEVPTS_OPTIONS = "newinstance,ptmxmode=0666"  # another context's ptys are not reachable
CONTEXTS_COVER_OPTIONS = "mode=0711,size=64k"  # hides the sibling work directories


def is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def kept_below_tmp(runtime_paths: list[str]) -> list[str]:
    """Read-only runtime paths below /tmp: bound again over the private /tmp."""
    return [path for path in runtime_paths if is_under(path, PRIVATE_TMP)]


def etc_files(user: str, uid: int, gid: int) -> dict[str, str]:
    """The synthesized passwd, group and hosts a context sees (and resolv.conf: see below)."""
    return {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{user}:x:{uid}:{gid}:cellbox sandbox:/tmp:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\n{user}:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": (
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
        # a context with a network namespace of its own asks the forwarder in there
        "resolv.conf": f"nameserver {DNS_ADDRESS}\n",
    }


def synthesized_etc(network: str) -> tuple[str, ...]:
    """The /etc files bound from the state directory: the host's resolv.conf under host."""
    return tuple(n for n in SYNTHESIZED_ETC if network != "host" or n != "resolv.conf")


# --------------------------------------------------------------------------- namespaces

# Namespace name -> clone(2) flag. bwrap's --unshare-<name> and the zygote's unshare(2)
# both come from this table.
CLONE_FLAGS = {
    "mount": 0x00020000,
    "cgroup": 0x02000000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "user": 0x10000000,
    "pid": 0x20000000,
    "net": 0x40000000,
}


def namespaces(network: bool) -> list[str]:
    """The namespaces a context gets of its own: all of them; ``net`` when the network is off."""
    names = ["user", "pid", "ipc", "uts", "mount", "cgroup"]
    return names if network else [*names, "net"]


# --------------------------------------------------------------------------- limits


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

    @property
    def tmpfs_bytes(self) -> int:
        """Size of a context's private /tmp and /dev/shm (charged to its memory cgroup)."""
        return self.memory_bytes


# rlimit name -> resource constant; the names travel in fork requests and setup scripts.
RLIMITS = {
    "core": resource.RLIMIT_CORE,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "data": resource.RLIMIT_DATA,
}
# rlimit name -> (dash's ulimit flag, the unit ulimit counts in)
ULIMIT_FLAGS = {
    "core": ("c", 512),
    "fsize": ("f", 512),
    "nofile": ("n", 1),
    "nproc": ("p", 1),
    "data": ("d", 1024),
}


def rlimits(
    limits: Limits, *, memory_cgroup: bool, pids_cgroup: bool, uid_threads: int
) -> dict[str, int]:
    """The rlimits of a context's processes; rlimits stand in for missing cgroups.

    ``uid_threads``: what the sandbox uid runs now. RLIMIT_NPROC counts every task of the
    uid (the server's own, other contexts'), so it allows that many on top.
    """
    wanted = {"core": 0, "fsize": limits.file_size_bytes, "nofile": limits.open_files}
    if not pids_cgroup:
        wanted["nproc"] = limits.pids + uid_threads
    if not memory_cgroup:
        wanted["data"] = limits.memory_bytes
    return wanted


def within_hard_limits(wanted: dict[str, int]) -> dict[str, int]:
    """``wanted`` lowered to this process's hard limits (raising needs CAP_SYS_RESOURCE)."""
    allowed = dict(wanted)
    for name, value in wanted.items():
        _, hard = resource.getrlimit(RLIMITS[name])
        if hard != resource.RLIM_INFINITY and value > hard:
            allowed[name] = hard
    return allowed


# --------------------------------------------------------------------------- environment

# Variables that change how the dynamic loader, libc or the shell behave. They never reach
# the root part of a launch chain: they are handed over after privileges are dropped.
LOADER_VARS = frozenset(
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
        "NODE_PATH",
        "PS4",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "SHELLOPTS",
        "TMPDIR",
        "TZDIR",
    }
)
UNIT_TAG = "CELLBOX_UNIT"  # marks a unit's processes where no cgroup or pid namespace can


def unsafe_for_root(key: str) -> bool:
    return key.startswith(("LD_", "MALLOC_")) or key in LOADER_VARS


def split_for_root(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(what the root part of a chain may see, what is set only after the uid drop)."""
    outer = {k: v for k, v in env.items() if not unsafe_for_root(k)}
    late = {k: v for k, v in env.items() if unsafe_for_root(k)}
    return outer, late


def environment(
    *, user: str, home: Path, tmp: str, bin_dirs: list[str], unit_tag: str | None
) -> dict[str, str]:
    """A worker's whole base environment: nothing of the server's is inherited."""
    env = {
        "PATH": ":".join([*bin_dirs, SYSTEM_PATH]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/sh",
        "TMPDIR": tmp,
        "MPLCONFIGDIR": f"{tmp}/.matplotlib",
        "IPYTHONDIR": f"{tmp}/.ipython",
        "XDG_CACHE_HOME": f"{tmp}/.cache",
        "XDG_CONFIG_HOME": f"{tmp}/.config",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if unit_tag is not None:
        env[UNIT_TAG] = unit_tag
    return env


def checked_env(env: dict[str, str]) -> dict[str, str]:
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"invalid environment variable {key!r}")
    return env


def check_unit(unit: str) -> None:
    if not isinstance(unit, str) or not _UNIT_RE.match(unit):
        raise ValueError(f"invalid sandbox unit name: {unit!r}")


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
