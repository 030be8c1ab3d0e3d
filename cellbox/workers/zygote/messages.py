"""The zygote's control protocol: the one definition both ends import.

Transport: a ``SOCK_SEQPACKET`` socket (the zygote's ``--control N``), one JSON object per
message, each with a ``type``.

- server -> zygote: :class:`Fork`, with the fds [worker protocol socket, stderr pipe,
  status pipe, cgroup ``tasks`` files...] attached (``SCM_RIGHTS``, at most ``MAX_FDS``).
- zygote -> server: :class:`Ready` once; :class:`Forked` or :class:`Failed` per request.

A child's end does not travel here: the child writes its exit status (as a shell would:
128+N for signal N) to the status pipe, whose only writer it is, so the server learns it
even when the zygote died long before.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_FDS = 64  # fds attached to one fork request
MAX_MESSAGE = 1 << 20


@dataclass(frozen=True)
class Fork:
    """Fork a worker for one unit, confined by these rules (see ``ForkSpec``)."""

    id: int
    workdir: str
    env: dict[str, str]
    rlimits: dict[str, int]
    network: bool
    tmpfs_size: int
    keep: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class Forked:
    id: int
    pid: int


@dataclass(frozen=True)
class Failed:
    id: int
    error: str


Message = Fork | Ready | Forked | Failed
_TYPES: dict[str, type[Any]] = {
    "fork": Fork,
    "ready": Ready,
    "forked": Forked,
    "failed": Failed,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}


def encode(message: Message) -> bytes:
    return json.dumps({"type": _NAMES[type(message)], **asdict(message)}).encode()


def decode(payload: bytes) -> Message:
    """The message in ``payload``; ``ValueError`` for anything else."""
    try:
        fields = json.loads(payload)
        kind = _TYPES[fields.pop("type")]
        return kind(**fields)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"bad zygote message: {payload[:200]!r}") from exc
