"""Using the preloaded stack once in the zygote, so that what first use costs is shared.

An import is only part of what a context's first cell pays for. First use imports more
(pandas 3 imports ``pyarrow.pandas_compat`` when it first builds an index of strings),
fills caches, starts allocators (pyarrow's memory pool) and faults in code pages. Done
once here, before the zygote forks, that memory is shared copy-on-write by every context
instead of copied into each one: ``make bench`` measured the PSS of a context after a
numpy/pandas/matplotlib cell at 31 MB without the pandas part and 26 MB with it.

Nothing of it reaches a cell: the values are local, no history is stored, nothing is
printed, and no thread is started (the zygote checks that before every fork).
"""

from __future__ import annotations

import sys
from typing import Any


def warm_up() -> None:
    """Run a silent cell, then the preloaded libraries' common first steps."""
    from IPython import get_ipython

    from cellbox.workers.python.shell import run_cell_path_once

    shell = get_ipython()
    run_cell_path_once(shell)
    shell.display_formatter.format(1)  # IPython's formatters, for values not plain
    assert shell.logger is not None  # imported on first use by cells that store history
    if "pandas" in sys.modules:
        try:
            _pandas(shell)
        except Exception as exc:  # a context can still use pandas; it just shares less
            sys.stderr.write(f"cellbox zygote: warming up pandas failed: {exc!r}\n")


def _pandas(shell: Any) -> None:
    """A frame with a string column, grouped, summed and formatted as a cell result is."""
    import numpy
    import pandas

    frame = pandas.DataFrame({"key": ["a", "b", "a"], "value": numpy.arange(3.0)})
    frame.groupby("key").value.sum().to_dict()
    shell.display_formatter.format(frame)
