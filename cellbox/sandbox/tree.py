"""Walking a directory tree of a work directory, bounded, without recursion or following links.

The code in a context may build a tree of any depth (one relative ``mkdir`` at a time). A
recursive walker (``os.fwalk``, ``shutil.rmtree``) fails on it with ``RecursionError`` and
keeps one descriptor open per level, so a deep enough tree would also empty the server's
descriptor table. This walker is a loop with a stack of at most :data:`MAX_DEPTH` open
directories: a deeper tree is refused with a clear error instead. Directories are opened by
name relative to their parent's descriptor with ``O_NOFOLLOW``, so a directory swapped for a
link meanwhile is skipped, never followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from cellbox.sandbox.files import MAX_DEPTH, FileError, explain, is_temporary, open_dir, shown

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# a name that changed meanwhile: gone, now a link or a file
_CHANGED = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)

MAX_ITEMS = 200_000  # entries in one listing (about 100 MB of answer being built)
Leave = Callable[[int, str], None]  # (parent's descriptor, name) of a directory walked


def too_deep(parts: tuple[str, ...]) -> FileError:
    return FileError(
        400,
        f"{shown(parts) or '.'} holds directories more than {MAX_DEPTH} levels deep: "
        "the API walks no deeper (the code may remove them)",
        "path",
    )


def _entries(fd: int, hidden: bool) -> list[os.DirEntry[str]]:
    with os.scandir(fd) as it:
        kept = (e for e in it if hidden or not is_temporary(e.name))
        return sorted(kept, key=lambda e: e.name)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    return entry.is_dir(follow_symlinks=False)


def walk(
    top: int,
    where: tuple[str, ...],
    recursive: bool = True,
    leave: Leave | None = None,
    hidden: bool = False,
) -> Iterator[tuple[tuple[str, ...], int, list[os.DirEntry[str]]]]:
    """Each directory from ``top`` (a descriptor of ``where``; itself first) as (parts below
    ``top``, its descriptor, its entries sorted by name; the API's temporary names only if
    ``hidden``).

    ``leave(parent_fd, name)`` is called once a subdirectory and all below it were walked.
    More than :data:`MAX_DEPTH` levels: ``FileError`` 400 (see :func:`too_deep`).
    """
    # each level: its descriptor, its parts, and the names of its subdirectories to visit
    stack: list[tuple[int, tuple[str, ...], Iterator[str]]] = []
    fd, parts = os.dup(top), ()
    try:
        while True:
            entries = _entries(fd, hidden)
            yield parts, fd, entries
            names = (e.name for e in entries if _is_dir(e)) if recursive else iter(())
            stack.append((fd, parts, names))
            fd = -1
            while stack and fd < 0:
                parent, parent_parts, names = stack[-1]
                name = next(names, None)
                if name is None:
                    stack.pop()
                    os.close(parent)
                    if stack and leave is not None:
                        leave(stack[-1][0], parent_parts[-1])
                    continue
                if len(stack) > MAX_DEPTH:
                    raise too_deep(where)
                try:
                    fd = os.open(name, _OPEN_DIR, dir_fd=parent)
                except OSError as exc:
                    if exc.errno not in _CHANGED:
                        raise
                    continue
                parts = (*parent_parts, name)
            if fd < 0:
                return
    finally:
        if fd >= 0:
            os.close(fd)
        for level, _, _ in stack:
            os.close(level)


def remove(root: int, parts: tuple[str, ...]) -> None:
    """Remove a file, link or (with its contents) a directory; never follows a link."""
    parent = open_dir(root, parts[:-1])
    try:
        remove_entry(parent, parts[-1], parts)
    except OSError as exc:
        raise explain(exc, parts) from None
    finally:
        os.close(parent)


def remove_entry(parent: int, name: str, where: tuple[str, ...]) -> None:
    """Remove ``name`` of the directory ``parent`` (``where``, for messages), as it is."""
    if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
        os.unlink(name, dir_fd=parent)
        return
    top = os.open(name, _OPEN_DIR, dir_fd=parent)
    try:
        _empty(top, where)
    finally:
        os.close(top)
    os.rmdir(name, dir_fd=parent)


def _empty(top: int, where: tuple[str, ...]) -> None:
    """Remove everything below the directory ``top`` (a descriptor of ``where``)."""

    def rmdir(parent: int, name: str) -> None:
        os.rmdir(name, dir_fd=parent)

    for _, fd, entries in walk(top, where, leave=rmdir, hidden=True):
        for entry in entries:
            if not _is_dir(entry):
                os.unlink(entry.name, dir_fd=fd)


_KINDS = {stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFREG: "file"}


def _item(path: str, st: os.stat_result) -> dict[str, Any] | None:
    kind = _KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        return None  # FIFOs, sockets, devices: nothing the API can serve
    modified = datetime.fromtimestamp(int(st.st_mtime), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    size = 0 if kind == "dir" else st.st_size
    return {"path": _printable(path), "type": kind, "size": size, "modified": modified}


def _printable(name: str) -> str:
    """A name as JSON can carry it: bytes that are not UTF-8 (the code may make such names)
    become U+FFFD instead of failing the whole answer."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def listing(root: int, parts: tuple[str, ...], recursive: bool) -> list[dict[str, Any]]:
    """The entries of a directory (and below, if ``recursive``), links not followed.

    At most :data:`MAX_ITEMS` (else ``FileError`` 400): the answer is built whole, and the
    code can make millions of empty files within its quota.
    """
    fd = open_dir(root, parts)
    items: list[dict[str, Any]] = []
    try:
        for below, _, entries in walk(fd, parts, recursive):
            for entry in entries:
                item = _item(shown((*parts, *below, entry.name)), entry.stat(follow_symlinks=False))
                if item is not None:
                    items.append(item)
                if len(items) > MAX_ITEMS:
                    raise FileError(
                        400,
                        f"{shown(parts) or '.'} holds more than {MAX_ITEMS} entries: list its "
                        "subdirectories one by one, or download it as an archive",
                        "path",
                    )
    except OSError as exc:
        raise explain(exc, parts, "directory") from None
    finally:
        os.close(fd)
    items.sort(key=lambda item: item["path"])
    return items
