"""How much a node can still take: its levels, its memory headroom, and the placement order."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cellbox.metrics import NodeStats

if TYPE_CHECKING:
    from cellbox.config import Settings
    from cellbox.sessions.registry import ContextRegistry

# A node with less memory left than this is tried only after the others.
LOW_MEMORY_BYTES = 256 << 20

_CGROUP_LIMITS = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # v2
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # absent, or "max" (no limit)


def memory_available_bytes(meminfo: str = "/proc/meminfo") -> int:
    """The host's available memory, or less when this process's cgroup (a pod) has a limit."""
    available = 0
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    for limit_file, usage_file in _CGROUP_LIMITS:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None:
            available = min(available, max(0, limit - usage))
    return available


def node_stats(registry: ContextRegistry, settings: Settings) -> NodeStats:
    """This node's levels now (what ``/metrics`` shows and placement reads)."""
    live = collections.Counter(context.runtime.name for context in registry.list())
    return NodeStats(
        live=dict(live),
        max_contexts=settings.max_contexts,
        memory_available_bytes=memory_available_bytes(),
        pool_ready={name: pool.ready for name, pool in registry.pools.items()},
        pool_target={name: pool.size for name, pool in registry.pools.items()},
    )


@dataclass
class Capacity:
    """One node as placement sees it."""

    node_id: str
    live: int
    max_contexts: int
    memory_available_bytes: int

    @property
    def free(self) -> int:
        return self.max_contexts - self.live


def placement_order(nodes: list[Capacity], local_id: str) -> list[str]:
    """Node ids, most free capacity first.

    Nodes with free slots and enough memory come first, ordered by free slots, then by
    memory headroom (in steps of ``LOW_MEMORY_BYTES``: small swings do not count), then this
    node before others (no forwarding hop); full or
    memory-starved nodes are still tried last, since their numbers may be seconds old.
    """

    def key(node: Capacity) -> tuple[bool, int, int, bool, str]:
        roomy = node.free > 0 and node.memory_available_bytes >= LOW_MEMORY_BYTES
        memory = node.memory_available_bytes // LOW_MEMORY_BYTES
        return (not roomy, -node.free, -memory, node.node_id != local_id, node.node_id)

    return [node.node_id for node in sorted(nodes, key=key)]
