"""A private mount namespace that lets the sandbox uid reach what it must, and no more.

An unprivileged bwrap can only bind what its uid can reach. When a path the worker needs
(the Python installation under a 0700 ``/root``, a 0700 state directory) is not traversable
by the sandbox uid, a helper process holds a private mount namespace in which the
untraversable directory is covered by a 0755 tmpfs and only the needed subtrees are
bind-mounted back; launch chains enter that namespace (``nsenter``) before dropping to the
uid. No host directory is chmod'ed and no host mount is made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import stat
import subprocess
import sys
import threading
from pathlib import Path

from cellbox.sandbox.policy import SYSTEM_PATH, SandboxError, is_under

log = logging.getLogger("cellbox.sandbox")

# Runs as root in a child process. It lives until the server closes its stdin (or dies).
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


class MountHelper:
    """The helper process for one set of covers and binds, (re)started on demand."""

    def __init__(self, covers: list[str], binds: list[str]) -> None:
        self.covers = covers
        self.binds = binds
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @classmethod
    def plan(cls, anchors: list[str], uid: int, gid: int) -> MountHelper | None:
        """A helper that makes ``anchors`` reachable by ``uid``, or None if all already are."""
        covers: set[str] = set()
        for anchor in anchors:
            blocked = _first_unsearchable(anchor, uid, gid)
            if blocked is not None:
                covers.add(blocked)
        top = sorted(c for c in covers if not any(o != c and is_under(c, o) for o in covers))
        if not top:
            return None
        binds = sorted({a for a in anchors if any(is_under(a, c) for c in top)}, key=len)
        binds = [b for i, b in enumerate(binds) if not any(is_under(b, o) for o in binds[:i])]
        return cls(top, binds)

    def report(self) -> dict[str, list[str]]:
        return {"covered": list(self.covers), "bound": list(self.binds)}

    def namespace(self) -> str:
        """The helper's mount namespace path, (re)starting the helper if needed."""
        with self._lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
            assert self.process is not None
            return f"/proc/{self.process.pid}/ns/mnt"

    def _start(self) -> None:
        log.info("sandbox mount helper: covering %s, binding back %s", self.covers, self.binds)
        spec = json.dumps({"covers": self.covers, "binds": self.binds})
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _HELPER_SCRIPT, spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
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
