"""The Python worker, one concern a module.

``worker`` (the protocol loop; ``prepare``/``preload``/``serve`` for the zygote) · ``shell``
(the IPython shell and its hooks) · ``capture`` (stdout/stderr sinks, fd pipes, no stdin) ·
``inbox`` (incoming frames and interrupts) · ``outbox`` (the one sender of frames) ·
``frames`` (MIME bundles, lenient encoding) · ``figures`` (matplotlib) · ``plotly_display``
(plotly figures) · ``plain_values`` (a plain value's text) · ``pip_lines`` (``pip install``
as a line of a cell) · ``tracebacks`` (what a user sees of an error).
"""
