"""Built-in names the code deleted come back when its cell is over.

The code shares ``builtins`` with the worker, IPython and every library, as in Jupyter:
``builtins.print = f`` or ``builtins.DEBUG = 1`` reach a module the code imports. Deleting
a built-in (``del builtins.len``) would only break the machinery that reports the cell and
runs the next one, so a deleted name is put back as soon as the cell's code is over,
before its answer is made. A replaced one stays the code's choice.
"""

from __future__ import annotations

import builtins
from typing import Any


class DeletedBuiltins:
    """The built-ins as they were when made; :meth:`restore` puts back the missing ones."""

    def __init__(self, namespace: dict[str, Any] | None = None) -> None:
        self._namespace = builtins.__dict__ if namespace is None else namespace
        self._original = dict(self._namespace)
        self._names = frozenset(self._original)
        self._order = [*self._original]  # the names in the dict's own (insertion) order
        self._count = len(self._order)

    def restore(self) -> None:
        """A list of the names and one comparison when nothing was deleted (the usual case).

        A dict keeps its keys in insertion order, and a deleted key put back goes to the
        end: so while the dict's names begin with the original ones, in order, none is
        missing. Comparing lists of the same strings is a third of the cost of looking each
        name up (``keys() >= names``), which is left for a dict whose order changed.
        Built-in functions are no help here: the code may have deleted them."""
        namespace = self._namespace
        order = self._order
        count = self._count
        if namespace.__len__() >= count:
            names = [*namespace]
            if names == order or names[:count] == order:
                return
        if not namespace.keys() >= self._names:
            for name, value in self._original.items():
                namespace.setdefault(name, value)
