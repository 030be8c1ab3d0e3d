"""Safe file access in a context's work directory, with the context's rights and view.

The server is root; the code in a context is not, and it controls everything inside its work
directory (it may plant symlinks, FIFOs, hard links). So every file operation here:

- runs on a thread whose filesystem uid and gid are the context's, with no capabilities (set per
  thread with raw syscalls; glibc's wrappers would change the whole process): the kernel itself
  refuses what the context could not do, and files the API creates belong to the context;
- resolves paths with ``openat2`` from a descriptor of the work directory with
  ``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV``: ``..``, absolute symlinks and
  symlinks leading out fail in the kernel (``EXDEV``), race-free; a symlink inside the work
  directory to a place inside it is followed, as the code would follow it;
- opens with ``O_NONBLOCK`` and checks ``fstat``: only regular files and directories are served,
  a FIFO, socket or device is refused without blocking;
- never writes through a final symlink or into an existing inode: uploads go to a fresh temporary
  file that is renamed over the name (so a hard link or symlink there is replaced, not followed),
  and the temporary file is removed on any failure (the disk quota's ``EDQUOT`` among them).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import re
import secrets
import stat
import threading

_libc = ctypes.CDLL(None, use_errno=True)

_SYS_OPENAT2 = 437  # the same number on every architecture (unified syscall table)
_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_BENEATH = _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS | _RESOLVE_NO_XDEV
# setgroups, setfsgid, setfsuid, capset: raw, each changes only the calling thread
_CRED_SYSCALLS = {"x86_64": (116, 123, 122, 126), "aarch64": (159, 152, 151, 91)}
_CAP_VERSION_3 = 0x20080522

TEMP_PREFIX = ".cellbox-"  # temporary names the API uses inside a work directory
_TEMPORARY = re.compile(r"\.cellbox-(upload|unpack)-[0-9a-f]{12}\Z")
MAX_DEPTH = 256  # directories below the work directory (or a walk's start) the API goes


class FileError(Exception):
    """A refused file operation: HTTP status, message, and the request field to blame."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def bad_path(message: str) -> FileError:
    return FileError(400, message, "path")


def quota_exceeded(what: str) -> FileError:
    return FileError(507, f"{what} would exceed the context's disk quota; nothing was kept")


# -- pure path rules ------------------------------------------------------------------------


def split_path(raw: str, root: str) -> tuple[str, ...]:
    """The components of ``raw`` below the work directory ``root``; ``()`` is the root.

    ``raw`` is relative to ``root``, or absolute inside it. NUL, ``..`` and absolute paths
    elsewhere are refused (``FileError`` 400 on ``path``); empty parts and ``.`` are dropped.
    """
    if "\0" in raw:
        raise bad_path("path contains a NUL byte")
    if raw.startswith("/"):
        root = root.rstrip("/")
        if raw != root and not raw.startswith(root + "/"):
            raise bad_path(f"path {raw} is outside the work directory")
        raw = raw[len(root) :]
    parts = tuple(part for part in raw.split("/") if part not in ("", "."))
    if ".." in parts:
        raise bad_path("path must not contain '..'")
    if len(parts) > MAX_DEPTH:
        raise bad_path(f"path is more than {MAX_DEPTH} levels deep")
    return parts


def file_parts(raw: str, root: str) -> tuple[str, ...]:
    """Like :func:`split_path`, for a call that needs a file name (not the root)."""
    parts = split_path(raw, root)
    if not parts:
        raise bad_path("path is empty: a file name is needed")
    return parts


def is_temporary(name: str) -> bool:
    """Is ``name`` one the API gives its own temporary files (hidden from listings)?

    Only the exact pattern: a file of the code's own named ``.cellbox-notes`` is listed.
    """
    return _TEMPORARY.match(name) is not None


def shown(parts: tuple[str, ...]) -> str:
    return "/".join(parts)


# -- the context's credentials and view -----------------------------------------------------


def become(uid: int, gid: int) -> None:
    """Give the calling thread (only it) the context's file rights and no capabilities.

    The filesystem uid and gid (what the kernel checks and stamps on new files) become the
    context's, the groups only its gid, and every capability is dropped for good. The real
    uid stays the server's, so these threads do not count as the context uid's processes.
    """
    if os.geteuid() == uid:
        return  # a server that is not root runs its contexts as itself
    numbers = _CRED_SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(errno.ENOSYS, f"no per-thread credentials on {platform.machine()}")
    setgroups, setfsgid, setfsuid, capset = numbers
    groups = (ctypes.c_uint * 1)(gid)
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    no_caps = (ctypes.c_uint32 * 6)()
    if _libc.syscall(setgroups, 1, groups) != 0:
        raise OSError(ctypes.get_errno(), "setgroups for a file thread")
    _libc.syscall(setfsgid, gid)
    _libc.syscall(setfsuid, uid)
    if _libc.syscall(capset, header, no_caps) != 0:
        raise OSError(ctypes.get_errno(), "dropping capabilities of a file thread")
    # setfsuid/setfsgid answer the previous value: ask again to be sure they took
    if _libc.syscall(setfsuid, -1) != uid or _libc.syscall(setfsgid, -1) != gid:
        raise OSError(errno.EPERM, "could not take the context's filesystem uid and gid")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0, resolve: int = _BENEATH) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, dir_fd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def open_root(workdir: str) -> int:
    """A descriptor of the work directory itself (opened by the server, before any lookup)."""
    return os.open(workdir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def explain(exc: OSError, parts: tuple[str, ...], what: str = "file") -> FileError:
    """The API's answer to an ``OSError`` met while resolving or using ``parts``."""
    name = shown(parts) or "."
    code = exc.errno
    if code == errno.ENOENT:
        return FileError(404, f"{what} not found: {name}")
    if code == errno.EXDEV:
        return bad_path(f"{name} leads outside the work directory")
    if code == errno.ELOOP:
        return bad_path(f"{name} passes through a symbolic link that cannot be followed")
    if code == errno.ENOTDIR:
        return bad_path(f"a part of {name} is not a directory")
    if code == errno.EISDIR:
        return bad_path(f"{name} is a directory, not a file")
    if code in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):
        return bad_path(f"{name} is neither a regular file nor a directory")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return FileError(403, f"permission denied: {name} (the context could not do this)")
    if code in (errno.EDQUOT, errno.ENOSPC, errno.EFBIG):
        return quota_exceeded(name)
    if code == errno.ENAMETOOLONG:
        return bad_path(f"{name}: name too long")
    if code == errno.ENOTEMPTY:
        return bad_path(f"{name} changed while the API removed it")
    return FileError(500, f"{name}: {os.strerror(code or 0)}")


def _checked(fd: int, parts: tuple[str, ...], want_dir: bool) -> os.stat_result:
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode) == want_dir and (want_dir or stat.S_ISREG(st.st_mode)):
        return st
    os.close(fd)
    if stat.S_ISDIR(st.st_mode):
        raise bad_path(f"{shown(parts)} is a directory, not a file")
    if stat.S_ISREG(st.st_mode):
        raise bad_path(f"{shown(parts) or '.'} is a file, not a directory")
    raise bad_path(f"{shown(parts)} is neither a regular file nor a directory")


def open_dir(root: int, parts: tuple[str, ...], create: bool = False) -> int:
    """A directory of the work directory, opened for reading; missing ones made if ``create``."""
    try:
        fd = openat2(root, shown(parts) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK)
    except OSError as exc:
        if not (create and exc.errno == errno.ENOENT and parts):
            raise explain(exc, parts, "directory") from None
        parent = open_dir(root, parts[:-1], create=True)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
        except OSError as exc2:
            raise explain(exc2, parts, "directory") from None
        finally:
            os.close(parent)
        return open_dir(root, parts)
    _checked(fd, parts, want_dir=True)
    return fd


def open_file(root: int, parts: tuple[str, ...]) -> tuple[int, os.stat_result]:
    """A regular file of the work directory opened for reading, and its status."""
    try:
        fd = openat2(root, shown(parts), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise explain(exc, parts) from None
    return fd, _checked(fd, parts, want_dir=False)


class Download:
    """A file opened for download; a read and the close never overlap (see :class:`Upload`)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        with self._lock:
            if self._fd < 0:
                raise OSError(errno.EBADF, "the download was closed")
            return os.pread(self._fd, size, offset)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class Upload:
    """A file being written: a temporary name beside the target, renamed over it at the end."""

    def __init__(self, root: int, parts: tuple[str, ...]) -> None:
        self.parts = parts
        self.size = 0
        # A cancelled request leaves its write running on a thread while abort() comes on
        # another: one at a time, so a descriptor is never closed twice.
        self._lock = threading.Lock()
        self._name = parts[-1]
        self._dir = open_dir(root, parts[:-1], create=True)
        self._temp = f"{TEMP_PREFIX}upload-{secrets.token_hex(6)}"
        try:
            with contextlib.suppress(FileNotFoundError):
                existing = os.stat(self._name, dir_fd=self._dir, follow_symlinks=False)
                if stat.S_ISDIR(existing.st_mode):
                    raise bad_path(f"{shown(parts)} is a directory, not a file")
                if stat.S_ISLNK(existing.st_mode):  # never written through; delete it first
                    raise bad_path(f"{shown(parts)} is a symbolic link")
                if not stat.S_ISREG(existing.st_mode):  # a FIFO, socket or device: not a file
                    raise bad_path(f"{shown(parts)} is neither a regular file nor a directory")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            self._fd = os.open(self._temp, flags, 0o644, dir_fd=self._dir)
        except FileError:
            os.close(self._dir)
            raise
        except OSError as exc:
            os.close(self._dir)
            raise explain(exc, parts) from None

    def write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                self._abort()
                raise explain(exc, self.parts) from None
            self.size += len(data)

    def commit(self) -> None:
        with self._lock:
            try:
                os.close(self._fd)
                self._fd = -1
                os.rename(self._temp, self._name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            except OSError as exc:
                self._abort()
                raise explain(exc, self.parts) from None
            os.close(self._dir)
            self._dir = -1

    def abort(self) -> None:
        """Remove the temporary file (idempotent)."""
        with self._lock:
            self._abort()

    def _abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._dir >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self._temp, dir_fd=self._dir)
            os.close(self._dir)
            self._dir = -1
