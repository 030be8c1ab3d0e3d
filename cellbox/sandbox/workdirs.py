"""The state directory's layout: the contexts' work directories and the sandbox's own files.

::

    <state>/contexts/<unit>/     a context's work directory (sandbox uid, 0700)
    <state>/sandbox/run/         pidfiles and the owner lock (root only)
    <state>/sandbox/public/etc/  the synthesized passwd, group and hosts (world-readable)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from cellbox.sandbox.policy import SYNTHESIZED_ETC, check_unit, etc_files

log = logging.getLogger("cellbox.sandbox")
_RM = shutil.which("rm", path="/usr/bin:/bin") or "rm"


class StateLayout:
    """Paths below one state directory; ``make`` creates them, nothing else writes here."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(os.path.abspath(state_dir))
        self.contexts = self.state_dir / "contexts"
        self.own = self.state_dir / "sandbox"
        self.run = self.own / "run"
        self.public = self.own / "public"
        self.etc = self.public / "etc"

    def etc_file(self, name: str) -> Path:
        assert name in SYNTHESIZED_ETC
        return self.etc / name

    def pidfile(self, unit: str) -> Path:
        return self.run / f"{unit}.pid"

    def make(self, *, root: bool, user: str, uid: int, gid: int) -> None:
        """Create the directories (root: traversable by the sandbox uid) and /etc files."""
        owner_only = 0o700
        self.state_dir.mkdir(mode=owner_only, parents=True, exist_ok=True)
        shared = 0o711 if root else owner_only
        for path, mode in (
            (self.contexts, shared),
            (self.own, shared),
            (self.run, owner_only),
            (self.public, 0o755 if root else owner_only),
            (self.etc, 0o755),
        ):
            path.mkdir(mode=mode, exist_ok=True)
            os.chmod(path, mode)
        for name, text in etc_files(user, uid, gid).items():
            tmp = self.etc / f".{name}.{os.getpid()}"
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.etc / name)

    def create_workdir(
        self, unit: str, uid: int, gid: int, make: Callable[[Path], None] = Path.mkdir
    ) -> Path:
        """A fresh private work directory for a context (made by ``make``), ``uid``'s, 0700."""
        check_unit(unit)
        path = self.contexts / unit
        if os.path.lexists(path):
            remove_tree(path)
        make(path)
        if uid != os.geteuid():
            os.chown(path, uid, gid)
        os.chmod(path, 0o700)
        return path

    def remove_workdir(self, unit: str) -> None:
        """Delete a context's work directory (never follows links the user made)."""
        check_unit(unit)
        remove_tree(self.contexts / unit)

    def checked_workdir(self, workdir: Path) -> Path:
        workdir = Path(os.path.abspath(workdir))
        if workdir.parent != self.contexts or not workdir.is_dir() or workdir.is_symlink():
            raise ValueError(f"{workdir} is not a work directory made by create_workdir()")
        return workdir

    def stale_workdirs(self) -> list[Path]:
        with contextlib.suppress(OSError):
            return [Path(entry.path) for entry in os.scandir(self.contexts)]
        return []


def remove_tree(path: Path) -> None:
    """Delete ``path`` with all below it, links not followed.

    ``rm`` walks a tree of any depth without recursion: the code may build one deeper than a
    recursive walk (``shutil.rmtree``) can go, and a work directory left behind would keep
    its disk space after its context was deleted.
    """
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    done = subprocess.run(
        [_RM, "-rf", "--", str(path)], stdin=subprocess.DEVNULL, capture_output=True
    )
    if done.returncode != 0:
        log.warning("could not remove all of %s: %s", path, done.stderr.decode(errors="replace"))
