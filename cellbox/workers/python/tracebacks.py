"""Tracebacks as the user should see them: plain text, without the worker's frames."""

from __future__ import annotations

import os
import traceback
from typing import Any

from cellbox.ansi import strip_ansi

_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Tracebacks:
    """Formats exceptions, hiding the worker's frames and IPython's around the user's."""

    def __init__(
        self,
        usage_error: type[BaseException],
        formatters_file: str,
        internal_dirs: tuple[str, ...],
        interactive_tb: Any = None,
    ) -> None:
        self._usage_error = usage_error
        self._formatters_file = formatters_file
        self._internal_dirs = internal_dirs
        self._interactive_tb = interactive_tb  # IPython's, whose mode ``%xmode`` sets

    def in_formatter(self, tb: Any) -> bool:
        """Did a ``_repr_*_`` method fail (IPython then skips that format)?"""
        return tb is not None and tb.tb_frame.f_code.co_filename == self._formatters_file

    def format(self, etype: Any, value: Any, tb: Any) -> str:
        if isinstance(value, self._usage_error):
            return strip_ansi(f"UsageError: {value}\n")  # IPython's own wording, no frames
        try:
            exc = traceback.TracebackException(etype, value, tb, compact=True)
            if getattr(self._interactive_tb, "mode", None) == "Minimal":
                text = "".join(exc.format_exception_only())  # the exception alone (%xmode)
            else:
                self._trim(exc, set(), isinstance(value, SystemExit))
                text = "".join(exc.format())
        except Exception:
            try:
                text = "".join(traceback.format_exception_only(etype, value))
            except Exception:
                text = f"{getattr(etype, '__name__', etype)}\n"
        return strip_ansi(text)

    def _trim(self, exc: traceback.TracebackException, seen: set[int], tail: bool) -> None:
        """Hide the worker's frames, and IPython's below the user's code (and above it
        when ``tail``, e.g. ``exit()`` raising inside IPython)."""
        if id(exc) in seen:
            return
        seen.add(id(exc))
        internal = self._internal_dirs
        frames = [frame for frame in exc.stack if not frame.filename.startswith(_OWN_DIR)]
        start = 0
        while start < len(frames) and frames[start].filename.startswith(internal):
            start += 1
        frames = frames[start:]
        while tail and frames and frames[-1].filename.startswith(internal):
            frames.pop()
        exc.stack = traceback.StackSummary.from_list(frames)
        for chained in (exc.__cause__, exc.__context__):
            if chained is not None:
                self._trim(chained, seen, False)
        for member in getattr(exc, "exceptions", None) or ():
            self._trim(member, seen, False)
