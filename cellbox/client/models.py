"""Typed shapes of the API's answers, parsed from JSON (no I/O here)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# Representations an item may carry, in the API's names; binary ones arrive base64-encoded.
BINARY_FORMATS = ("png", "jpeg", "pdf")
TEXT_FORMATS = ("text", "html", "markdown", "svg", "latex", "javascript")
# Python's default repr (``<IPython.core.display.HTML object>``): a text that says nothing.
_PLACEHOLDER = re.compile(r"<[\w.]+ object( at 0x[0-9a-f]+)?>")
# Longer texts are cut in an item's repr: a figure's SVG or a table's HTML would fill a screen.
REPR_CHARS = 80


@dataclass(frozen=True, repr=False)
class Item:
    """One rich output of an execution (a value, a ``display()``, a figure)."""

    is_primary: bool = False
    text: str | None = None
    html: str | None = None
    markdown: str | None = None
    svg: str | None = None
    latex: str | None = None
    javascript: str | None = None
    png: bytes | None = None
    jpeg: bytes | None = None
    pdf: bytes | None = None
    json: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        fields: dict[str, Any] = {"is_primary": bool(data.get("is_primary", False))}
        for name in TEXT_FORMATS:
            if data.get(name) is not None:
                fields[name] = data[name]
        for name in BINARY_FORMATS:
            if data.get(name) is not None:
                fields[name] = base64.b64decode(data[name])
        if "json" in data:
            fields["json"] = data["json"]
        fields["extra"] = dict(data.get("extra") or {})
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        """The item in the API's own shape (binary formats base64 again)."""
        out: dict[str, Any] = {"is_primary": self.is_primary}
        for name in TEXT_FORMATS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name in BINARY_FORMATS:
            if getattr(self, name) is not None:
                out[name] = base64.b64encode(getattr(self, name)).decode("ascii")
        if self.json is not None:
            out["json"] = self.json
        if self.extra:
            out["extra"] = self.extra
        return out

    def __repr__(self) -> str:
        """The representations present, long texts cut and binary ones as their size (the
        whole PNG of a figure would bury the rest of an execution's repr)."""
        shown = ["is_primary=True"] if self.is_primary else []
        for name in TEXT_FORMATS:
            if (value := getattr(self, name)) is not None:
                shown.append(f"{name}={_cut(value)}")
        for name in BINARY_FORMATS:
            if (value := getattr(self, name)) is not None:
                shown.append(f"{name}=<{len(value)} bytes>")
        if self.json is not None:
            shown.append(f"json={_cut(repr(self.json), quote=False)}")
        if self.extra:
            shown.append(f"extra=<{', '.join(self.extra)}>")
        return f"Item({', '.join(shown)})"

    @property
    def readable(self) -> str | None:
        """The item as text for a reader: ``text``, unless that is only the default
        ``<… object>`` repr of a display object whose Markdown, LaTeX or JSON form says more."""
        if self.text is not None and not is_placeholder(self.text):
            return self.text
        if self.json is not None and not (self.markdown or self.latex):
            return json.dumps(self.json, indent=2, ensure_ascii=False)
        return self.markdown or self.latex or self.text

    @property
    def formats(self) -> list[str]:
        """The representations present, e.g. ``["text", "png"]``."""
        names = [*TEXT_FORMATS, *BINARY_FORMATS, "json"]
        return [name for name in names if getattr(self, name) is not None] + list(self.extra)


def _cut(text: str, quote: bool = True) -> str:
    """``text`` for a repr (quoted when ``quote``), cut after ``REPR_CHARS`` with its length told."""
    if len(text) <= REPR_CHARS:
        return repr(text) if quote else text
    start = repr(text[:REPR_CHARS]) if quote else text[:REPR_CHARS]
    return f"{start}…<{len(text)} chars>"


def is_placeholder(text: str) -> bool:
    """Whether ``text`` is only Python's default repr of an object (it says nothing)."""
    return _PLACEHOLDER.fullmatch(text) is not None


@dataclass(frozen=True)
class ExecutionError:
    """An error raised by the user's code (never an HTTP error)."""

    name: str
    value: str
    traceback: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecutionError:
        return cls(
            str(data.get("name", "")), str(data.get("value", "")), data.get("traceback") or ""
        )

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "value": self.value, "traceback": self.traceback}

    def __str__(self) -> str:
        # As Python says it: a bare KeyboardInterrupt has no ": " after its name.
        return f"{self.name}: {self.value}" if self.value else self.name


@dataclass(frozen=True)
class Logs:
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


def _text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class Execution:
    """The whole result of one execution."""

    context_id: str
    results: list[Item] = field(default_factory=list)
    logs: Logs = field(default_factory=Logs)
    error: ExecutionError | None = None
    execution_count: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Execution:
        logs = data.get("logs") or {}
        error = data.get("error")
        return cls(
            context_id=data["context_id"],
            results=[Item.from_json(item) for item in data.get("items") or []],
            logs=Logs(list(logs.get("stdout") or []), list(logs.get("stderr") or [])),
            error=ExecutionError.from_json(error) if error else None,
            execution_count=int(data.get("execution_count") or 0),
        )

    def to_json(self) -> dict[str, Any]:
        """The execution in the shape ``POST /execute`` answers."""
        return {
            "context_id": self.context_id,
            "items": [item.to_json() for item in self.results],
            "logs": {"stdout": self.logs.stdout, "stderr": self.logs.stderr},
            "error": self.error.to_json() if self.error else None,
            "execution_count": self.execution_count,
        }

    @property
    def stdout(self) -> str:
        """Everything printed to standard output, one ``\\n``-terminated line per line."""
        return _text(self.logs.stdout)

    @property
    def stderr(self) -> str:
        return _text(self.logs.stderr)

    @property
    def primary(self) -> Item | None:
        """The value of the cell's last expression, if it had one."""
        return next((item for item in self.results if item.is_primary), None)

    @property
    def text(self) -> str | None:
        """The primary item's plain text (``None`` when there is none)."""
        return self.primary.text if self.primary else None

    @property
    def ok(self) -> bool:
        return self.error is None


# ---- streamed events (``POST /execute/async``) ----


@dataclass(frozen=True)
class Stdout:
    data: str
    type: Literal["stdout"] = "stdout"


@dataclass(frozen=True)
class Stderr:
    data: str
    type: Literal["stderr"] = "stderr"


@dataclass(frozen=True)
class Result:
    item: Item
    type: Literal["result"] = "result"


@dataclass(frozen=True)
class Error:
    error: ExecutionError
    type: Literal["error"] = "error"


@dataclass(frozen=True)
class Exit:
    code: int
    context_id: str
    execution_count: int
    type: Literal["exit"] = "exit"


Event = Stdout | Stderr | Result | Error | Exit


def parse_event(data: dict[str, Any]) -> Event:
    """One SSE ``data:`` payload as a typed event."""
    kind = data.get("type")
    if kind == "stdout":
        return Stdout(str(data.get("data", "")))
    if kind == "stderr":
        return Stderr(str(data.get("data", "")))
    if kind == "result":
        return Result(Item.from_json(data.get("data") or {}))
    if kind == "error":
        return Error(ExecutionError.from_json(data))
    if kind == "exit":
        return Exit(
            int(data.get("code", 0)),
            str(data.get("context_id", "")),
            int(data.get("execution_count") or 0),
        )
    raise ValueError(f"unknown event type {kind!r}")


def fold_events(events: Iterable[Event]) -> Execution:
    """The :class:`Execution` a finished stream of events amounts to."""
    results: list[Item] = []
    logs = Logs()
    error: ExecutionError | None = None
    for event in events:
        if isinstance(event, Stdout):
            logs.stdout.append(event.data)
        elif isinstance(event, Stderr):
            logs.stderr.append(event.data)
        elif isinstance(event, Result):
            results.append(event.item)
        elif isinstance(event, Error):
            error = event.error
        elif isinstance(event, Exit):
            return Execution(event.context_id, results, logs, error, event.execution_count)
    raise ValueError("the event stream ended without an exit event")


# ---- contexts and files ----


@dataclass(frozen=True)
class ContextInfo:
    """What the server says about a context; unknown fields are kept in ``extra``."""

    id: str
    language: str
    cwd: str = ""
    network: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContextInfo:
        known = {"id", "language", "cwd", "network"}
        return cls(
            id=data["id"],
            language=data.get("language", ""),
            cwd=data.get("cwd") or "",
            network=data.get("network"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "language": self.language, "cwd": self.cwd}
        if self.network is not None:
            out["network"] = self.network
        return {**out, **self.extra}


@dataclass(frozen=True)
class FileInfo:
    """One entry of a context's work directory."""

    path: str
    type: str  # "file", "dir" or "symlink"
    size: int = 0
    modified: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileInfo:
        modified = data.get("modified")
        return cls(
            path=data["path"],
            type=data.get("type", "file"),
            size=int(data.get("size") or 0),
            modified=datetime.fromisoformat(modified.replace("Z", "+00:00")) if modified else None,
        )

    def to_json(self) -> dict[str, Any]:
        modified = self.modified.isoformat().replace("+00:00", "Z") if self.modified else None
        return {"path": self.path, "type": self.type, "size": self.size, "modified": modified}


@dataclass(frozen=True)
class Uploaded:
    """The answer to an upload: where the file landed and its size."""

    path: str
    size: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Uploaded:
        return cls(data["path"], int(data.get("size") or 0))


@dataclass(frozen=True)
class Unpacked:
    """The answer to an archive upload."""

    path: str
    files: int
    size: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unpacked:
        return cls(data.get("path", ""), int(data.get("files") or 0), int(data.get("size") or 0))
