"""Inside a context: its own site directory goes ahead of the shared site-packages.

Imported by the worker and, through ``sitecustomize`` on ``PYTHONPATH``, by every Python
process the context starts, so ``import x`` finds what the context installed. Standard
library only: it runs at every interpreter start in a context.
"""

from __future__ import annotations

import os
import site
import sys

SITE_VAR = "CELLBOX_SITE_PACKAGES"


def activate() -> str | None:
    """Put the context's site directory on ``sys.path`` (created if missing); its path."""
    target = os.environ.get(SITE_VAR)
    if not target:
        return None
    try:
        os.makedirs(target, exist_ok=True)
    except OSError:
        pass  # a read-only or full work directory: imports from it still work if it exists
    if target not in sys.path:
        # before the first site-packages: an upgrade shadows the shared version, while
        # the standard library stays first (a backport cannot replace it)
        index = next(
            (i for i, p in enumerate(sys.path) if p.endswith(("site-packages", "dist-packages"))),
            len(sys.path),
        )
        sys.path.insert(index, target)
    # .pth files (editable installs, namespace packages), as a real site directory has
    before = list(sys.path)
    site.addsitedir(target)
    added = [p for p in sys.path if p not in before]
    for path in added:  # addsitedir appends: keep them beside the site directory
        sys.path.remove(path)
        sys.path.insert(sys.path.index(target) + 1, path)
    return target
