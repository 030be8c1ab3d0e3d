"""Archives of a work directory: a streamed tar.gz out, a tar or tar.gz unpacked in.

Runs on a file thread (the context's credentials, see ``cellbox.sandbox.files``). Unpacking is
all or nothing: members are checked one by one as they stream in and written below a temporary
directory inside the work directory (so the disk quota counts them); only when the whole archive
was good are they moved into the target directory. A bad member or a full quota removes the
temporary directory and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tarfile
import zlib
from collections.abc import Callable

from cellbox.sandbox import tree
from cellbox.sandbox.files import (
    MAX_DEPTH,
    TEMP_PREFIX,
    FileError,
    explain,
    open_dir,
    openat2,
    shown,
)

_CHUNK = 1 << 20
_NO_LINKS = 0x04 | 0x08 | 0x02 | 0x01  # RESOLVE_NO_SYMLINKS | BENEATH | NO_MAGICLINKS | NO_XDEV


def bad_member(message: str) -> FileError:
    return FileError(400, message, "archive")


# -- pure member rules ----------------------------------------------------------------------


def member_parts(name: str) -> tuple[str, ...]:
    """Where a member lands below the target directory; refuses absolute names, ``..`` and
    names deeper than the API walks (:data:`cellbox.sandbox.files.MAX_DEPTH`)."""
    if "\0" in name:
        raise bad_member("a member name contains a NUL byte")
    if name.startswith("/"):
        raise bad_member(f"member {name!r} has an absolute name")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise bad_member(f"member {name!r} would land outside the target directory")
    if len(parts) > MAX_DEPTH:
        raise bad_member(f"member {name[:200]!r}... is more than {MAX_DEPTH} levels deep")
    return parts


def link_target(parts: tuple[str, ...], target: str) -> str:
    """A symlink member's target, if it stays inside the target directory.

    Only leading ``..`` steps are taken, no more than the link is deep: a ``..`` after a name
    could step back out of a directory that is itself a link (``d/l -> ../../x`` is
    refused, and so is ``l -> d/link/../..``), whatever the other members are.
    """
    steps = [step for step in target.split("/") if step not in ("", ".")]
    ups = next((i for i, step in enumerate(steps) if step != ".."), len(steps))
    if (
        not target
        or target.startswith("/")
        or "\0" in target
        or ".." in steps[ups:]
        or ups > len(parts) - 1
    ):
        raise bad_member(f"symlink {shown(parts)!r} points outside the target directory")
    return target


# -- out ------------------------------------------------------------------------------------


class _GzipSink:
    """A write-only file object that gzips into ``send`` in pieces of about a megabyte."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._zip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip container
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> int:
        self._push(self._zip.compress(data))
        return len(data)

    def _push(self, data: bytes, final: bool = False) -> None:
        if data:
            self._pending.append(data)
            self._size += len(data)
        if self._size >= _CHUNK or (final and self._pending):
            self._send(b"".join(self._pending))
            self._pending, self._size = [], 0

    def close(self) -> None:
        self._push(self._zip.flush(), final=True)


def write_archive(root: int, parts: tuple[str, ...], send: Callable[[bytes], None]) -> None:
    """Stream a tar.gz of a directory into ``send``: files, directories and symlinks."""
    top = open_dir(root, parts)
    sink = _GzipSink(send)
    try:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for below, dir_fd, entries in tree.walk(top, parts):
                for entry in entries:
                    _add(tar, dir_fd, entry.name, shown((*below, entry.name)))
    except OSError as exc:
        raise explain(exc, parts, "directory") from None
    finally:
        os.close(top)
    sink.close()


def _add(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    info = tarfile.TarInfo(arcname)
    info.mtime, info.mode = int(st.st_mtime), stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except PermissionError:
            return  # the context could not read it either
        with os.fdopen(fd, "rb") as f:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                return  # swapped meanwhile
            info.size = now.st_size
            tar.addfile(info, f)
    # FIFOs, sockets and devices are left out


# -- in -------------------------------------------------------------------------------------


class Unpacked:
    """What an unpack wrote: regular files and their bytes."""

    def __init__(self) -> None:
        self.files = 0
        self.size = 0


def extract_archive(
    root: int, parts: tuple[str, ...], source: tarfile.ExFileObject | object
) -> Unpacked:
    """Unpack the tar or tar.gz read from ``source`` (has ``read(n)``) below ``parts``."""
    staging_name = f"{TEMP_PREFIX}unpack-{secrets.token_hex(6)}"
    top = open_dir(root, ())
    try:
        os.mkdir(staging_name, 0o700, dir_fd=top)
        staging = os.open(staging_name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
    except OSError as exc:
        os.close(top)
        raise explain(exc, parts, "directory") from None
    try:
        done = _unpack(staging, source)
        target = open_dir(root, parts, create=True)
        try:
            _merge(staging, target, (), dry_run=True)
            _merge(staging, target, (), dry_run=False)
        finally:
            os.close(target)
        return done
    except OSError as exc:
        raise explain(exc, parts, "directory") from None
    finally:
        os.close(staging)
        with contextlib.suppress(OSError):
            tree.remove_entry(top, staging_name, parts)
        os.close(top)


_MAX_HEADER = 1 << 20  # a pax or GNU long-name record: names, a link target, a few numbers
_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class _Member(tarfile.TarInfo):
    """A member header that ``tarfile`` reads only if it is of a sane size.

    ``tarfile`` reads a pax or long-name record whole into memory, and the map of a sparse
    member a block at a time without end: from a small gzip bomb, the server's memory.
    """

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in _HEADER_TYPES and self.size > _MAX_HEADER:
            raise bad_member(f"an extended header of {self.size} bytes (at most {_MAX_HEADER})")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise bad_member(f"member {self.name!r} is a sparse file: not supported")
        return super()._proc_member(tar)  # type: ignore[misc]

    def _refuse_sparse(self, *_: object) -> None:
        raise bad_member("a member is a sparse file (pax GNU.sparse): not supported")

    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _refuse_sparse


def _unpack(staging: int, source: object) -> Unpacked:
    done = Unpacked()
    try:
        tar = tarfile.open(fileobj=source, mode="r|*", tarinfo=_Member)  # type: ignore[call-overload]
        while (member := tar.next()) is not None:
            tar.members.clear()  # kept for random access we never do: memory per member
            _extract(tar, member, staging, done)
    except tarfile.TarError as exc:
        raise bad_member(f"not a readable tar or tar.gz archive: {exc}") from None
    except (EOFError, zlib.error) as exc:
        raise bad_member(f"broken archive: {exc}") from None
    except RecursionError:  # tarfile reads chained extended headers recursively
        raise bad_member("too many extended headers in a row") from None
    return done


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, staging: int, done: Unpacked) -> None:
    parts = member_parts(member.name)
    if not parts:
        return
    if member.isdir():
        os.close(_make_dirs(staging, parts))
    elif member.issym():
        target = link_target(parts, member.linkname)
        parent = _make_dirs(staging, parts[:-1], parts)
        _replace(parent, parts, lambda d: os.symlink(target, parts[-1], dir_fd=d))
    elif member.islnk():
        try:
            source = member_parts(member.linkname)
        except FileError:
            raise bad_member(f"hard link {shown(parts)!r} points outside the archive") from None
        _hard_link(staging, source, parts)
    elif member.isreg():
        fileobj = tar.extractfile(member)
        parent = _make_dirs(staging, parts[:-1], parts)
        _replace(parent, parts, lambda d: _write(d, parts[-1], fileobj, member.mode))
        done.files += 1
        done.size += member.size
    else:
        raise bad_member(f"member {shown(parts)!r} is a device, FIFO or other special file")


def _make_dirs(staging: int, parts: tuple[str, ...], member: tuple[str, ...] = ()) -> int:
    """The staging directory at ``parts``, made one component at a time, never via a link."""
    fd = os.dup(staging)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            child = openat2(fd, part, os.O_RDONLY | os.O_DIRECTORY, resolve=_NO_LINKS)
            os.close(fd)
            fd = child
    except OSError as exc:
        os.close(fd)
        raise _unpack_error(exc, member or parts) from None
    return fd


def _unpack_error(exc: OSError, parts: tuple[str, ...]) -> FileError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV, errno.EEXIST):
        return bad_member(f"member {shown(parts)!r} would be written through a link or a file")
    if exc.errno == errno.ENAMETOOLONG:
        return bad_member(f"member {shown(parts)[:200]!r}...: a name is too long")
    return explain(exc, parts)


def _replace(parent: int, parts: tuple[str, ...], make: Callable[[int], None]) -> None:
    """Make the last part in ``parent`` with ``make``, replacing an earlier member there."""
    try:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                raise bad_member(f"member {shown(parts)!r} would replace a directory")
            os.unlink(parts[-1], dir_fd=parent)
        make(parent)
    except OSError as exc:
        raise _unpack_error(exc, parts) from None
    finally:
        os.close(parent)


def _write(parent: int, name: str, fileobj: object, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, (mode & 0o777) | 0o600, dir_fd=parent)
    try:
        while chunk := fileobj.read(_CHUNK):  # type: ignore[attr-defined]
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _hard_link(staging: int, source: tuple[str, ...], parts: tuple[str, ...]) -> None:
    """A hard link member: only to a regular file that this archive put in staging before."""
    if not source:
        raise bad_member(f"hard link {shown(parts)!r} has no target")
    try:
        src_dir = _make_dirs(staging, source[:-1])
    except FileError:
        raise bad_member(f"hard link {shown(parts)!r} points outside the archive") from None
    try:
        st = os.stat(source[-1], dir_fd=src_dir, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise bad_member(f"hard link {shown(parts)!r} does not point to a file")
        parent = _make_dirs(staging, parts[:-1], parts)
        _replace(
            parent,
            parts,
            lambda d: os.link(
                source[-1], parts[-1], src_dir_fd=src_dir, dst_dir_fd=d, follow_symlinks=False
            ),
        )
    except FileNotFoundError:
        raise bad_member(f"hard link {shown(parts)!r} points outside the archive") from None
    finally:
        os.close(src_dir)


def _merge(src: int, dst: int, parts: tuple[str, ...], dry_run: bool) -> None:
    """Move the staged tree into the target; a dry run only checks nothing conflicts."""
    for entry in sorted(os.listdir(src)):
        here = (*parts, entry)
        staged_dir = stat.S_ISDIR(os.stat(entry, dir_fd=src, follow_symlinks=False).st_mode)
        try:
            existing = os.stat(entry, dir_fd=dst, follow_symlinks=False).st_mode
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing) != staged_dir:
            what = "a directory" if staged_dir else "a file"
            raise bad_member(f"member {shown(here)!r} is {what} but the target has something else")
        if staged_dir and existing is not None:
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
            sub_src = os.open(entry, flags, dir_fd=src)
            try:
                sub_dst = os.open(entry, flags, dir_fd=dst)
            except OSError:
                os.close(sub_src)
                raise
            try:
                _merge(sub_src, sub_dst, here, dry_run)
            finally:
                os.close(sub_src)
                os.close(sub_dst)
        elif not dry_run:
            os.rename(entry, entry, src_dir_fd=src, dst_dir_fd=dst)
