"""Why a context this node made is gone, so that its 404 can say so.

A context removed by the idle reaper, or lost because the server stopped or died, is not
something its client did: the 404 for it names the reason instead of a bare "not found".
A context the client deleted answers the plain 404.

Across server restarts the ids of the live contexts are kept in a small append-only log in
the state directory (``+id`` when a context is made, ``-id`` when it is removed on
purpose); at start, the ids still live in the previous run's log are the ones that run
lost. The log is rewritten with only the live ids when it has grown well past them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import TextIO

log = logging.getLogger("cellbox.contexts")

REMEMBERED = 50_000  # the reasons kept in memory (oldest forgotten first)
_COMPACT_MIN = 10_000  # log lines before a rewrite is considered


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Fates:
    """The reasons for the recently removed contexts, and the log of the live ones."""

    def __init__(self, log_path: Path | None) -> None:
        self._path = log_path
        self._reasons: OrderedDict[str, str] = OrderedDict()
        self._live: set[str] = set()
        self._lines = 0
        self._file: TextIO | None = None
        if log_path is not None:
            self._recall_previous_run(log_path)

    def why(self, context_id: str) -> str | None:
        """Why ``context_id`` is gone, if it was not its client's doing."""
        return self._reasons.get(context_id)

    def created(self, context_id: str) -> None:
        self._live.add(context_id)
        self._append(f"+{context_id}\n")

    def deleted(self, context_id: str) -> None:
        """Removed by its client: the plain 404 from now on."""
        self._forget(context_id)

    def reaped(self, context_id: str, idle_timeout_s: float) -> None:
        """Removed by the idle reaper: its 404 says so."""
        self._forget(context_id)
        self._remember(
            context_id,
            f"it was removed after {idle_timeout_s:g} s without use (the server's idle "
            "timeout); its state and files are gone",
        )

    def close(self) -> None:
        """The server stops: the live contexts stay in the log (the next run tells them)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    # -- inside -----------------------------------------------------------------------

    def _remember(self, context_id: str, reason: str) -> None:
        self._reasons[context_id] = reason
        while len(self._reasons) > REMEMBERED:
            self._reasons.popitem(last=False)

    def _forget(self, context_id: str) -> None:
        if context_id in self._live:
            self._live.discard(context_id)
            self._append(f"-{context_id}\n")

    def _recall_previous_run(self, path: Path) -> None:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            log.warning("cannot read %s (lost contexts will answer a plain 404): %s", path, exc)
            text = ""
        lost = live_ids(text.splitlines())
        reason = (
            f"it was lost when the server stopped (started again {_utc(time.time())}); "
            "its state and files are gone"
        )
        for context_id in lost:
            self._remember(context_id, reason)
        self._rewrite()

    def _append(self, line: str) -> None:
        if self._path is None:
            return
        self._lines += 1
        if self._lines > max(_COMPACT_MIN, 4 * len(self._live)):
            self._rewrite()
            return
        try:
            if self._file is None:
                self._file = open(self._path, "a", buffering=1)  # kept open
            self._file.write(line)
        except OSError as exc:
            self._give_up(exc)

    def _rewrite(self) -> None:
        """The log becomes the live ids only."""
        assert self._path is not None
        self.close()
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}")
        try:
            tmp.write_text("".join(f"+{context_id}\n" for context_id in self._live))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._path)
        except OSError as exc:
            self._give_up(exc)
        self._lines = len(self._live)

    def _give_up(self, exc: OSError) -> None:
        log.warning(
            "cannot write %s (contexts lost by a restart will answer a plain 404): %s",
            self._path,
            exc,
        )
        self.close()
        self._path = None


def live_ids(lines: list[str]) -> list[str]:
    """The ids a log's lines leave live (``+id`` adds, ``-id`` removes), in order made."""
    live: dict[str, None] = {}
    for line in lines:
        sign, context_id = line[:1], line[1:].strip()
        if not context_id:
            continue
        if sign == "+":
            live[context_id] = None
        elif sign == "-":
            live.pop(context_id, None)
    return list(live)
