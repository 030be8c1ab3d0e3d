"""Inside a context: its own site directory goes ahead of the shared site-packages, and
the commands its packages install go on ``PATH``.

Imported by the worker and, through ``sitecustomize`` on ``PYTHONPATH``, by every Python
process the context starts, so ``import x`` finds what the context installed and ``!x`` or
``subprocess.run(["x"])`` its command. Standard library only: it runs at every interpreter
start in a context. ``PATH`` is changed here, inside, never in what the server hands the
sandbox's launch chain: the directory is the context's to write.
"""

from __future__ import annotations

import os
import site
import sys
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    SourceFileLoader,
    SourcelessFileLoader,
)

SITE_VAR = "CONTEXT_SITE_PACKAGES"
# the shims of pip, uv and npm (cellbox/packages/shim/bin): they stay first on PATH
SHIM_BIN = os.path.join(os.path.dirname(os.path.realpath(__file__)), "shim", "bin")


def activate() -> str | None:
    """Put the context's site directory on ``sys.path``; its path (None: not configured).

    The directory is made by the first install. Until then Python would remember it as
    "no such directory" and not look again, so a finder is registered for it up front: it
    notices the directory (and every later change) by its modification time, which makes
    a package importable in the very execution that installed it.
    """
    target = os.environ.get(SITE_VAR)
    if not target:
        return None
    if target not in sys.path:
        # before the first site-packages: an upgrade shadows the shared version, while
        # the standard library stays first (a backport cannot replace it)
        index = next(
            (i for i, p in enumerate(sys.path) if p.endswith(("site-packages", "dist-packages"))),
            len(sys.path),
        )
        sys.path.insert(index, target)
    if sys.path_importer_cache.get(target) is None:
        sys.path_importer_cache[target] = FileFinder(
            target,
            (ExtensionFileLoader, EXTENSION_SUFFIXES),
            (SourceFileLoader, SOURCE_SUFFIXES),
            (SourcelessFileLoader, BYTECODE_SUFFIXES),
        )
    _put_commands_on_path(os.path.join(target, "bin"))
    if os.path.isdir(target):
        # .pth files (editable installs, namespace packages), as a real site directory has
        before = list(sys.path)
        site.addsitedir(target)
        for path in [p for p in sys.path if p not in before]:  # addsitedir appends them
            sys.path.remove(path)
            sys.path.insert(sys.path.index(target) + 1, path)
    return target


def _put_commands_on_path(bin_dir: str) -> None:
    """``bin_dir`` on ``PATH`` (for this process and its children), after the shims, so
    ``pip`` stays the shim even once the context installed a pip of its own."""
    path = os.environ.get("PATH")
    if path is None:
        return
    entries = path.split(os.pathsep)
    if bin_dir not in entries:
        entries.insert(entries.index(SHIM_BIN) + 1 if SHIM_BIN in entries else 0, bin_dir)
        os.environ["PATH"] = os.pathsep.join(entries)
