"""The event stream of one execution, and its two views.

A worker sends raw frames (output chunks, MIME bundles, an error, ``done``). The server
turns them into *events*, shaped exactly like the SSE events of ``POST /execute/async``:

- ``{"type": "stdout", "data": line}`` / ``{"type": "stderr", "data": line}``
- ``{"type": "result", "data": item}``
- ``{"type": "error", "data": "Name: value", "name": ..., "value": ..., "traceback": ...}``
- ``{"type": "exit", "code": 0|1, "context_id": ..., "execution_count": n}`` (last)

``POST /execute/async`` forwards them; ``POST /execute`` folds them with :class:`Fold`.
"""

from __future__ import annotations

from typing import Any

from cellbox.ansi import strip_ansi

# MIME type -> item field; anything else goes to ``extra``.
_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    "text/javascript": "javascript",
}


def bundle_to_item(bundle: dict[str, Any], primary: bool) -> dict[str, Any]:
    """A worker's MIME bundle as an API item."""
    item: dict[str, Any] = {"is_primary": primary}
    extra: dict[str, Any] = {}
    for mime, value in bundle.items():
        name = _FIELDS.get(mime)
        if name is None:
            extra[mime] = value
        elif name not in item:
            item[name] = strip_ansi(value) if name == "text" and isinstance(value, str) else value
    if extra:
        item["extra"] = extra
    return item


def error_event(name: str, value: str, traceback: str = "") -> dict[str, Any]:
    name, value, traceback = strip_ansi(name), strip_ansi(value), strip_ansi(traceback)
    data = f"{name}: {value}" if value else name
    return {"type": "error", "data": data, "name": name, "value": value, "traceback": traceback}


class OutputLines:
    """Splits the stdout/stderr chunks of one execution into lines, within a byte cap.

    Memory stays bounded: at most ``cap`` bytes are ever kept, whatever the code prints.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = 0
        self.dropped = 0
        self._partial = {"stdout": "", "stderr": ""}

    def feed(self, stream: str, text: str) -> list[dict[str, Any]]:
        """Events for the complete lines that ``text`` finishes."""
        size = len(text.encode("utf-8", "surrogatepass"))
        room = self.cap - self.kept
        if size > room:
            if room > 0:
                text = text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
                kept = len(text.encode("utf-8", "surrogatepass"))
            else:
                text, kept = "", 0
            self.kept += kept
            self.dropped += size - kept
            if not text:
                return []
        else:
            self.kept += size
        pending = self._partial[stream] + text
        lines = pending.split("\n")
        self._partial[stream] = lines.pop()
        return [_line_event(stream, line) for line in lines]

    def drop(self, size: int) -> None:
        """Count ``size`` bytes of output that never arrived as text."""
        self.dropped += size

    def finish(self) -> list[dict[str, Any]]:
        """Events for the partial last lines and, if output was dropped, the note saying so."""
        events = []
        for stream in ("stdout", "stderr"):
            if self._partial[stream]:
                events.append(_line_event(stream, self._partial[stream]))
                self._partial[stream] = ""
        if self.dropped:
            events.append(
                {
                    "type": "stderr",
                    "data": f"[cellbox] output limit of {self.cap} bytes reached: "
                    f"{self.dropped} more bytes of stdout/stderr were dropped",
                }
            )
        return events


class ItemCap:
    """Keeps the rich items of one execution within a byte cap, each whole or not at all.

    An item's size is the JSON the worker sent for it. An item that does not fit in what
    is left is dropped whole (a cut PNG or JSON would be worse than none); a later, smaller
    one may still fit. At most ``cap`` bytes of items are ever kept, whatever the code shows.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = 0
        self.dropped_items = 0
        self.dropped_bytes = 0

    def admit(self, size: int) -> bool:
        """Whether an item of ``size`` bytes is kept (counted as dropped if not)."""
        if size <= self.cap - self.kept:
            self.kept += size
            return True
        self.dropped_items += 1
        self.dropped_bytes += size
        return False

    def finish(self) -> list[dict[str, Any]]:
        """The note saying what was dropped, if anything was."""
        if not self.dropped_items:
            return []
        one = self.dropped_items == 1
        items = "1 item was" if one else f"{self.dropped_items} items were"
        return [
            {
                "type": "stderr",
                "data": f"[cellbox] rich output limit of {self.cap} bytes reached: "
                f"{items} dropped ({self.dropped_bytes} bytes)",
            }
        ]


def _line_event(stream: str, line: str) -> dict[str, Any]:
    if line.endswith("\r"):
        line = line[:-1]
    return {"type": stream, "data": strip_ansi(line)}


class Fold:
    """The ``POST /execute`` view: all events of one execution folded into one response."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.error: dict[str, str] | None = None
        self.exit: dict[str, Any] = {}

    def add(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self._add(event)

    def _add(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "stdout":
            self.stdout.append(event["data"])
        elif kind == "stderr":
            self.stderr.append(event["data"])
        elif kind == "result":
            self.items.append(event["data"])
        elif kind == "error":
            self.error = {
                "name": event["name"],
                "value": event["value"],
                "traceback": event["traceback"],
            }
        elif kind == "exit":
            self.exit = event

    def response(self) -> dict[str, Any]:
        return {
            "context_id": self.exit.get("context_id"),
            "items": self.items,
            "logs": {"stdout": self.stdout, "stderr": self.stderr},
            "error": self.error,
            "execution_count": self.exit.get("execution_count", 0),
        }
