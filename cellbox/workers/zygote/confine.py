"""Confine a process forked by the zygote to one context: cgroups, namespaces, mounts, caps.

The zygote (:mod:`cellbox.workers.zygote`) runs as the sandbox uid in a bubblewrap sandbox
that shares the host's pid namespace and sees the whole contexts directory. Each child it
forks calls, before any user code runs:

1. :func:`join_cgroups` (fds of the unit's cgroup ``tasks`` files, opened by the root
   server: writing ``0`` moves the writer), :func:`set_rlimits`;
2. :func:`enter_user_namespace` (uid/gid mapped to themselves, setgroups denied), then
   :func:`unshare_namespaces` (pid, ipc, uts, cgroup and, when off, net);
3. in the first process of the new pid namespace: :func:`mount_private_view` (a mount
   namespace of its own with a fresh ``/proc``; the contexts directory covered, only the own
   work directory bound back; private ``/tmp``, ``/dev/shm`` and ptys),
   :func:`bring_up_loopback` (network off),
   :func:`forbid_user_namespaces`, :func:`set_dumpable` (off: its worker child cannot ptrace
   it) and :func:`drop_capabilities` (nothing left, no_new_privs).

Linux only, x86-64 or any architecture glibc wraps these calls for.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import socket
import struct

from cellbox.sandbox.policy import (
    CLONE_FLAGS,
    CONTEXTS_COVER_OPTIONS,
    DEVPTS_OPTIONS,
    PRIVATE_TMP,
    RLIMITS,
    SHM_MODE,
    TMP_MODE,
    namespaces,
)

_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_SAFE = _MS_NOSUID | _MS_NODEV

_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {fstype or source} on {target}",
    )


def join_cgroups(task_fds: list[int]) -> None:
    """Move this process into each cgroup whose ``tasks`` file ``task_fds`` are open on."""
    for fd in task_fds:
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def set_rlimits(limits: dict[str, int]) -> None:
    """Set soft and hard limits by name (``core``, ``fsize``, ``nofile``, ...)."""
    for name, value in limits.items():
        resource.setrlimit(RLIMITS[name], (value, value))


def enter_user_namespace() -> None:
    """A new user namespace in which this process keeps its own uid and gid (and no groups)."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_FLAGS["user"]), "unshare(CLONE_NEWUSER)")
    _write_file("/proc/self/setgroups", "deny")
    _write_file("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write_file("/proc/self/gid_map", f"{gid} {gid} 1\n")


def unshare_namespaces(network: bool) -> None:
    """The policy's namespaces but user and mount; children get the new pid namespace.

    The user namespace is :func:`enter_user_namespace`'s. The mount namespace is made by
    :func:`mount_private_view` for the first process of the new pid namespace alone. Were
    the caller in it, the fresh ``/proc`` mounted there would hide the caller (it is not in
    that pid namespace): ``/proc/self`` would dangle.
    """
    flags = 0
    for name in namespaces(network):
        if name not in ("user", "mount"):
            flags |= CLONE_FLAGS[name]
    _check(_libc.unshare(flags), "unshare(namespaces)")


def bring_up_loopback() -> None:
    """Switch on ``lo`` of a new network namespace (it starts down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", _IFF_UP))


def mount_private_view(workdir: str, tmpfs_size: int, keep: list[str]) -> None:
    """What the context sees of the file system: its own /proc, work directory and /tmp.

    Call as the first process of the new pid namespace (a fresh /proc shows that one); it
    gets a mount namespace of its own first, so its parent keeps the /proc it can see itself
    in. ``workdir`` stays at its own path; its siblings (other contexts) disappear.
    ``keep``: read-only paths below /tmp (an installation there) that stay visible.
    """
    contexts = os.path.dirname(workdir)
    _check(_libc.unshare(CLONE_FLAGS["mount"]), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("proc", "/proc", "proc", _MS_SAFE | _MS_NOEXEC)
    own = os.open(workdir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    kept = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in keep}
    try:
        size = f"size={tmpfs_size}"
        _mount("tmpfs", PRIVATE_TMP, "tmpfs", _MS_SAFE, f"mode={TMP_MODE},{size}")
        for path, fd in kept.items():  # a bind mount keeps the source's read-only flag
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        _mount("tmpfs", "/dev/shm", "tmpfs", _MS_SAFE | _MS_NOEXEC, f"mode={SHM_MODE},{size}")
        _mount("devpts", "/dev/pts", "devpts", _MS_NOSUID | _MS_NOEXEC, DEVPTS_OPTIONS)
        os.makedirs(contexts, exist_ok=True)  # a state directory below /tmp is gone by now
        _mount("cellbox", contexts, "tmpfs", _MS_SAFE | _MS_NOEXEC, CONTEXTS_COVER_OPTIONS)
        os.mkdir(workdir, 0o700)
        _mount(f"/proc/self/fd/{own}", workdir, None, _MS_BIND)
    finally:
        os.close(own)
        for fd in kept.values():
            os.close(fd)
    _mount(None, contexts, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_SAFE | _MS_NOEXEC)


def forbid_user_namespaces() -> None:
    """No process below may create a user namespace (nor, so, regain capabilities)."""
    _write_file("/proc/sys/user/max_user_namespaces", "0")


def drop_capabilities() -> None:
    """Empty every capability set, the bounding set included, and set no_new_privs."""
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
        last = int(f.read())
    for cap in range(last + 1):
        _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _check(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def set_dumpable(dumpable: bool) -> None:
    """Whether processes of the same uid may ptrace this one or read its /proc details."""
    _check(_libc.prctl(_PR_SET_DUMPABLE, int(dumpable), 0, 0, 0), "PR_SET_DUMPABLE")
