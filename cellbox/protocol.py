"""The framed protocol between the server and a worker process.

Transport: one connected UNIX stream socket, inherited by the worker as the file
descriptor named by ``--fd N`` on its command line. It is never the user's stdout or
stderr. Each frame is a 4-byte big-endian unsigned length followed by that many bytes
of UTF-8 JSON (one object).

Server -> worker:

- ``{"op": "execute", "id": int, "code": str, "env": {str: str}, "count": int}``: run
  one cell. At most one is outstanding at a time; the server waits for ``done`` before
  sending the next. ``env`` is applied to the process environment for this execution
  only. ``id`` (unique per server) is echoed on every frame of this execution. ``count``
  is the execution's ``execution_count``, the number the Python worker gives the cell
  (``_N``, ``Out[N]``, ``In[N]``); 0 for the server's own code (the package install at
  context creation), which is kept out of the cell history. Optional.
- ``{"op": "chdir", "path": str}``: make ``path`` the working directory (sent only
  between executions, to start a context in a chosen ``cwd``). Answered by
  ``{"type": "chdir", "ok": bool, "error": str}``.
- ``{"op": "interrupt"}``: stop the running execution (Python: ``KeyboardInterrupt``;
  TypeScript: terminate the running script, error name ``Interrupted``). Ignored when
  idle. The worker must read it even while user code runs.

Worker -> server (the frames of an execution carry its ``"id": int``; the server drops
those of any other execution, so a ``done`` written by the code itself, which runs in the
worker's process and can reach the socket, cannot shift the answers of later executions;
a frame that breaks these shapes makes the server kill the worker as misbehaving):

- ``{"type": "ready"}``: sent once, when the worker can take ``execute``.
- ``{"type": "stdout", "text": str}`` / ``{"type": "stderr", "text": str}``: output
  chunks in the order printed (any size; the server splits lines and applies the cap).
- ``{"type": "display", "bundle": {mime: value}}``: a rich item (``display()``, a
  figure). ``bundle`` is a MIME bundle: ``text/plain`` str, ``image/png`` base64 str,
  ``application/json`` any JSON value, other MIME types as produced.
- ``{"type": "result", "bundle": {...}}``: the value of the cell's last expression.
- ``{"type": "error", "name": str, "value": str, "traceback": str}``: the cell failed.
  Plain text, no ANSI codes.
- ``{"type": "done"}``: the execution is over; always the last frame of an execution.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30
ITEM_KINDS = ("display", "result")  # the frames that carry a rich item


def encode(message: dict[str, Any]) -> bytes:
    """One frame: length header plus JSON payload."""
    payload = orjson.dumps(message)
    return HEADER.pack(len(payload)) + payload


def decode(payload: bytes) -> dict[str, Any]:
    """The message carried by one frame's payload."""
    return orjson.loads(payload)


class ProtocolError(ValueError):
    """A frame from a worker that breaks the protocol."""


_ID = ("id", int)
# The fields each kind of worker frame must have, with their types.
_FIELDS: dict[str, tuple[tuple[str, type], ...]] = {
    "ready": (),
    "chdir": (("ok", bool), ("error", str)),
    "stdout": (_ID, ("text", str)),
    "stderr": (_ID, ("text", str)),
    "display": (_ID, ("bundle", dict)),
    "result": (_ID, ("bundle", dict)),
    "error": (_ID, ("name", str), ("value", str), ("traceback", str)),
    "done": (_ID,),
}


def decode_worker_frame(payload: bytes) -> dict[str, Any]:
    """A worker's frame, checked against the shapes above (``ProtocolError`` if it breaks
    them: not JSON, not an object, an unknown type, a missing or ill-typed field)."""
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"a frame that is not JSON ({exc})") from None
    if message.__class__ is not dict:
        raise ProtocolError(f"a frame that is not a JSON object but {type(message).__name__}")
    kind = message.get("type")
    fields = _FIELDS.get(kind) if kind.__class__ is str else None
    if fields is None:
        raise ProtocolError(f"a frame of unknown type {str(kind)[:40]!r}")
    for name, expected in fields:
        if not isinstance(message.get(name), expected):
            raise ProtocolError(f"a {kind!r} frame without a valid {name!r}")
    return message
