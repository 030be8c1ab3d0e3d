"""The Python worker, one concern a module.

``worker`` (the protocol loop; ``prepare``/``preload``/``serve`` for the zygote) · ``shell``
(the IPython shell and its hooks) · ``capture`` (stdout/stderr sinks, fd pipes, no stdin) ·
``outbox`` (the one sender of frames) · ``frames`` (MIME bundles, lenient encoding) ·
``figures`` (matplotlib) · ``tracebacks`` (what a user sees of an error).
"""
