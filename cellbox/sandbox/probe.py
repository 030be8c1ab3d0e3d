"""What this host offers the sandbox, read once into a frozen :class:`Capabilities`.

:func:`read_host` looks (users, tools, the shell, where the runtimes live); the sandbox then
tries launchers for real, best first, and records what works with ``dataclasses.replace``.
Everything that builds launch commands reads these facts, never the host, so it can be
tested against a made-up host.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import shutil
import sys
from dataclasses import dataclass

from cellbox.node import node_bin_dir
from cellbox.sandbox.policy import (
    SHELL,
    TOOL_PATH,
    TOP_LEVEL,
    UID_RANGE,
    USER_NAME,
    SandboxError,
    is_under,
)

log = logging.getLogger("cellbox.sandbox")

BWRAP, UID_ONLY, DIRECT = "bubblewrap", "uid-only", "direct"


@dataclass(frozen=True)
class Capabilities:
    """Facts about the host and which launcher worked on it."""

    root: bool  # the server runs as root
    server_uid: int
    uid: int  # of the workers
    gid: int
    user: str
    bwrap: str | None  # tool paths, None when missing
    setpriv: str | None
    nsenter: str | None
    unshare: str | None  # root: makes a unit's network namespace (--network public)
    prlimit: str | None
    env_tool: str
    use_ulimit: bool  # the shell is dash: rlimits by ``ulimit``, else by prlimit(1)
    bin_dirs: tuple[str, ...]  # the interpreter's and Node's, first on a worker's PATH
    runtime_paths: tuple[str, ...]  # read-only paths a worker needs outside /usr
    real_paths: tuple[str, ...]  # their real paths, one each
    top_level: tuple[tuple[str, str | None], ...]  # /bin etc.: (path, symlink target)
    system_python: bool  # the interpreter is the distribution's (under /usr)
    launcher: str = DIRECT  # BWRAP, UID_ONLY or DIRECT: the one that worked
    bwrap_compat: bool = False  # a bwrap without --disable-userns / --size

    @property
    def dedicated_uid(self) -> bool:
        return self.uid != self.server_uid


def read_host(uid: int | None, extra_ro_paths: list[str]) -> Capabilities:
    """The host's facts; the launcher is tried later (``launcher`` starts at DIRECT)."""
    root = os.geteuid() == 0
    if root:
        # Even with the sandbox disabled, user code never runs as root.
        worker_uid, gid, user = _pick_user(uid)
    else:
        worker_uid, gid = os.geteuid(), os.getegid()
        try:
            user = pwd.getpwuid(worker_uid).pw_name
        except KeyError:
            user = USER_NAME
    use_ulimit = os.path.basename(os.path.realpath(SHELL)) == "dash"
    runtime = _runtime_paths(extra_ro_paths)
    bins = [os.path.join(sys.prefix, "bin")]
    node = node_bin_dir()
    if node is not None:
        bins.append(node)
    top_level: list[tuple[str, str | None]] = []
    for name in TOP_LEVEL:
        path = f"/{name}"
        if os.path.islink(path):
            top_level.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            top_level.append((path, None))
    return Capabilities(
        root=root,
        server_uid=os.geteuid(),
        uid=worker_uid,
        gid=gid,
        user=user,
        bwrap=shutil.which("bwrap", path=TOOL_PATH),
        setpriv=shutil.which("setpriv", path=TOOL_PATH),
        nsenter=shutil.which("nsenter", path=TOOL_PATH) if root else None,
        unshare=shutil.which("unshare", path=TOOL_PATH) if root else None,
        prlimit=None if use_ulimit else shutil.which("prlimit", path=TOOL_PATH),
        env_tool=shutil.which("env", path=TOOL_PATH) or "/usr/bin/env",
        use_ulimit=use_ulimit,
        bin_dirs=tuple(bins),
        runtime_paths=tuple(runtime),
        real_paths=tuple(os.path.realpath(p) for p in runtime),
        top_level=tuple(top_level),
        system_python=is_under(os.path.realpath(sys.base_prefix), "/usr"),
    )


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
    for uid in UID_RANGE:
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


def _runtime_paths(extra: list[str]) -> list[str]:
    """Read-only paths a worker needs: the interpreter, the venv, the cellbox package."""
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates = [
        sys.base_prefix,
        sys.base_exec_prefix,
        sys.prefix,
        sys.exec_prefix,
        os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
        package,
        *extra,
    ]
    paths: list[str] = []
    for candidate in candidates:
        for path in {os.path.abspath(candidate), os.path.realpath(candidate)}:
            if path not in paths and os.path.exists(path):
                paths.append(path)
    paths.sort(key=len)
    kept: list[str] = []
    for path in paths:
        if is_under(path, "/usr") or any(is_under(path, k) for k in kept):
            continue
        kept.append(path)
    return kept
