"""Built-in names the code deleted come back when its cell is over.

The code shares ``builtins`` with the worker, IPython and every library, as in Jupyter:
``builtins.print = f`` or ``builtins.DEBUG = 1`` reach a module the code imports. Deleting
a built-in (``del builtins.len``) would only break the machinery that reports the cell and
runs the next one, so a deleted name is put back as soon as the cell's code is over,
before its answer is made. A replaced one stays the code's choice.
"""

from __future__ import annotations

import builtins


class DeletedBuiltins:
    """The built-ins as they were when made; :meth:`restore` puts back the missing ones."""

    def __init__(self) -> None:
        self._namespace = builtins.__dict__
        self._original = dict(self._namespace)
        self._names = frozenset(self._original)

    def restore(self) -> None:
        """One set comparison when nothing was deleted (the usual case)."""
        if not self._namespace.keys() >= self._names:
            for name, value in self._original.items():
                self._namespace.setdefault(name, value)
