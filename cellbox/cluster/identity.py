"""Node ids, context ids and peer addresses. Every context id names the node that owns it.

``ctx_<node>_<24 hex digits>``: any node tells the owner of a context from its id alone,
without shared state. Node ids are DNS labels (a Kubernetes pod name is one), so they
never contain ``_``.
"""

from __future__ import annotations

import re
import secrets
import socket

_NODE_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_CONTEXT_ID = re.compile(r"ctx_([a-z0-9-]{1,63})_[0-9a-f]{24}")


def check_node_id(value: str) -> str:
    """``value`` if it is a usable node id, else ``ValueError`` saying what one is."""
    if not _NODE_ID.fullmatch(value):
        raise ValueError(
            f"node id {value!r} must be a DNS label: lower-case letters, digits and '-', "
            "1 to 63 characters, starting and ending with a letter or digit"
        )
    return value


def default_node_id() -> str:
    """The host name as a node id (a StatefulSet pod's host name is its stable pod name)."""
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return name[:63].strip("-") or "local"


def new_context_id(node_id: str) -> str:
    return f"ctx_{node_id}_{secrets.token_hex(12)}"


def owner_of(context_id: str) -> str | None:
    """The node id inside a context id; ``None`` if it is not a context id at all."""
    match = _CONTEXT_ID.fullmatch(context_id)
    return match.group(1) if match else None


_URL = re.compile(r"https?://[^\s/,]+")
_DNS = re.compile(r"dns:([A-Za-z0-9.-]+):(\d{1,5})")


def parse_peers(spec: str) -> tuple[list[str], list[tuple[str, int]]]:
    """``spec`` as (URLs, DNS names with ports); ``ValueError`` naming a bad entry."""
    urls: list[str] = []
    names: list[tuple[str, int]] = []
    for entry in spec.replace(",", " ").split():
        entry = entry.rstrip("/")
        if match := _DNS.fullmatch(entry):
            names.append((match.group(1), int(match.group(2))))
        elif _URL.fullmatch(entry):
            urls.append(entry)
        else:
            raise ValueError(
                f"peer {entry!r} is neither a URL (http://host:port) nor dns:NAME:PORT"
            )
    return urls, names


def check_peers(spec: str) -> str:
    parse_peers(spec)
    return spec
