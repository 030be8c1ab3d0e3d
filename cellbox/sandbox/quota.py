"""Per-context disk quota, enforced by the kernel.

All work directories live on one btrfs volume (a sparse image file, loop-mounted once at start
over the contexts directory). Each work directory is a btrfs subvolume with a qgroup limit, so
a write past the limit fails with ``EDQUOT`` in whatever process makes it (user code, the
server's file API, a package install), root included. A new work directory costs two ioctls.

The volume is mounted where the work directories always were, visible on the host (operators and
tests look at work directories there). A clean shutdown unmounts it and deletes the image; after a
killed server, the next start with the same state directory detaches the stale mount first.

Where this is impossible (not root, no btrfs tools, the kernel refuses), work directories are
plain directories and the quota is reported as not enforced.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger("cellbox.sandbox")

_MNT_DETACH = 2

# ioctl numbers from linux/btrfs.h: _IOW(0x94, 14, 4096-byte vol_args), _IOR(0x94, 43, 48 bytes)
_BTRFS_IOC_SUBVOL_CREATE = (1 << 30) | (4096 << 16) | (0x94 << 8) | 14
_BTRFS_IOC_QGROUP_LIMIT = (2 << 30) | (48 << 16) | (0x94 << 8) | 43
_QGROUP_LIMIT_MAX_RFER = 1

_TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_MIN_VOLUME = 256 << 20

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        text = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise OSError(f"{argv[0]} failed: {text.splitlines()[-1] if text else done.returncode}")


def volume_size(backing_dir: Path) -> int:
    """The sparse image's size: most of what is free where it lives (it only takes what is used)."""
    stat = os.statvfs(backing_dir)
    return max(_MIN_VOLUME, int(stat.f_bavail * stat.f_frsize * 0.9))


class DiskQuota:
    """Makes work directories that the kernel keeps within ``limit_bytes`` each."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.enforced = False
        self.reason = "not set up"
        self._contexts: Path | None = None
        self._image: Path | None = None

    def setup(self, contexts: Path, image: Path) -> None:
        """Mount the quota volume over ``contexts``; on failure, say why.

        The server holds the state directory's lock: a volume already mounted there is a
        killed server's.
        """
        mkfs = shutil.which("mkfs.btrfs", path=_TOOL_PATH)
        btrfs = shutil.which("btrfs", path=_TOOL_PATH)
        if os.geteuid() != 0:
            self.reason = "the server is not root: it cannot mount the quota volume"
            return
        if mkfs is None or btrfs is None:
            self.reason = "btrfs-progs (mkfs.btrfs, btrfs) not installed"
            return
        try:
            if os.path.ismount(contexts):
                log.warning("detaching the stale quota volume on %s", contexts)
                _check(_libc.umount2(str(contexts).encode(), _MNT_DETACH), "detach stale volume")
            with contextlib.suppress(FileNotFoundError):
                image.unlink()
            with open(image, "wb") as f:
                f.truncate(volume_size(image.parent))
            os.chmod(image, 0o600)
            _run(mkfs, "-q", "-f", str(image))
            _run(
                "mount",
                "-o",
                "loop,nodev,nosuid,noatime,discard=async",
                str(image),
                str(contexts),
            )
            _run(btrfs, "quota", "enable", str(contexts))
        except OSError as exc:
            self.reason = f"quota volume unavailable: {exc}"
            log.warning("disk quota not enforced: %s", self.reason)
            with contextlib.suppress(OSError):
                image.unlink()
            return
        os.chmod(contexts, 0o711)
        self._contexts, self._image = contexts, image
        self.enforced = True
        self.reason = "btrfs qgroup per context on a loop-mounted volume"

    def create_dir(self, path: Path) -> None:
        """A new empty directory at ``path`` (a child of the contexts directory), limited."""
        if not self.enforced:
            path.mkdir(mode=0o700)
            return
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            name = path.name.encode()
            args = bytearray(struct.pack("q4088s", 0, name))  # mutable: longer than 1024
            fcntl.ioctl(parent, _BTRFS_IOC_SUBVOL_CREATE, args)
        finally:
            os.close(parent)
        own = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            # qgroup id 0: the subvolume the fd is in
            limit = struct.pack("6Q", 0, _QGROUP_LIMIT_MAX_RFER, self.limit_bytes, 0, 0, 0)
            fcntl.ioctl(own, _BTRFS_IOC_QGROUP_LIMIT, limit)
        finally:
            os.close(own)

    def close(self) -> None:
        """Detach the volume and delete its image."""
        if self._contexts is None or self._image is None:
            return
        _check_quiet(_libc.umount2(str(self._contexts).encode(), _MNT_DETACH))
        with contextlib.suppress(OSError):
            self._image.unlink()
        self._contexts = self._image = None

    def report(self) -> dict[str, Any]:
        """What ``GET /info`` says about disk limits."""
        if self.enforced:
            how = "kernel: " + self.reason + "; writes past it fail with EDQUOT"
        else:
            how = (
                f"NOT enforced ({self.reason}); a context can fill the state directory's disk, "
                "only the upload limit and the per-file size limit apply"
            )
        return {"disk_limit_bytes": self.limit_bytes, "enforced": self.enforced, "how": how}


def _check_quiet(result: int) -> None:
    if result != 0:
        log.warning("unmounting the quota volume: %s", os.strerror(ctypes.get_errno()))
