"""This node as a member of a cluster: its peers, the client that reaches them, its lifetime."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from cellbox.cluster import forward
from cellbox.cluster.capacity import Capacity, node_stats
from cellbox.cluster.peers import Peer, Peers
from cellbox.cluster.transport import StreamTransport

if TYPE_CHECKING:
    from cellbox.config import Settings
    from cellbox.sessions.registry import ContextRegistry

LIST_TIMEOUT_S = 1.5

log = logging.getLogger("cellbox.cluster")


class ClusterNode:
    """Knows the other nodes and what this one holds; started and stopped with the app."""

    def __init__(self, settings: Settings, token: str, registry: ContextRegistry) -> None:
        self.node_id = settings.node_id
        self.settings = settings
        self.token = token
        self.registry = registry
        self.instance = secrets.token_hex(8)  # this process: tells this node from a twin
        self.sender = f"{self.node_id} {self.instance}"
        self.duplicate_id = False
        self.transport = StreamTransport()
        self.http = forward.client(self.transport)
        self.peers = Peers(
            settings.peers,
            settings.node_id,
            token,
            self.http,
            settings.peer_dns_server,
            self.sender,
        )
        self._refreshing: asyncio.Task[None] | None = None
        # New contexts on their way to a node, by node id: counted as live there until the
        # node has answered, so a burst of creations is spread instead of all going to the
        # node that looked emptiest when the burst began.
        self._placing: collections.Counter[str] = collections.Counter()
        self._in_flight: set[forward.Exchange] = set()  # requests forwarded from here
        self._hurry = asyncio.Event()
        self._listening = asyncio.Event()

    async def start(self) -> None:
        self._refreshing = asyncio.create_task(
            self.peers.run(self.settings.peer_refresh_s, self._listening)
        )

    def listening(self) -> None:
        """The server accepts connections now, so this node's own URL among the peers'
        answers: until then the peers are not read (see :meth:`Peers.run`)."""
        self._listening.set()

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(BaseException):
                await self._refreshing
        await self.http.aclose()

    async def forward(
        self,
        peer: Peer,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes | None = None,
        decline: Collection[int] = (),
    ) -> bool:
        """Forward one request to ``peer`` (see :func:`cellbox.cluster.forward.forward`)."""
        return await forward.forward(
            self.transport,
            peer,
            self.sender.encode(),
            scope,
            receive,
            send,
            self._in_flight,
            body,
            decline,
        )

    def heard_from(self, sender: bytes) -> None:
        """A request from another node: say so (once) if it was given this node's id, which
        breaks the cluster (each answers the other's contexts with 404)."""
        node_id, _, instance = sender.decode("latin-1").partition(" ")
        if node_id == self.node_id and instance and instance != self.instance:
            if not self.duplicate_id:
                log.error(
                    "another node also has the node id %r: every node needs its own "
                    "--node-id (context ids name their node)",
                    node_id,
                )
            self.duplicate_id = True

    async def drain(self) -> None:
        """On shutdown: the requests forwarded from here get the grace period to finish, as
        the executions accepted here do; then they are cut (503 if nothing was answered)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_s
        while self._in_flight and loop.time() < deadline and not self._hurry.is_set():
            await asyncio.sleep(0.05)
        for exchange in list(self._in_flight):
            exchange.abort(forward.SHUTDOWN)

    def hurry(self) -> None:
        """Cut the grace period short."""
        self._hurry.set()

    def describe(self) -> dict[str, Any]:
        """For ``GET /info``: this node and its peers as last seen."""
        peers = [
            {
                "node": peer.node_id,
                "url": peer.url,
                "reachable": peer.reachable,
                "contexts": peer.live,
                "max_contexts": peer.max_contexts,
            }
            for peer in self.peers.others()
        ]
        return {"node": self.node_id, "duplicate_id": self.duplicate_id, "peers": peers}

    def capacities(self) -> list[Capacity]:
        """This node (counted now) and every reachable peer (as last read), each with the
        new contexts on their way to it."""
        stats = node_stats(self.registry, self.settings)
        local = Capacity(
            self.node_id,
            sum(stats.live.values()),
            stats.max_contexts,
            stats.memory_available_bytes,
        )
        nodes = [local, *(peer.capacity() for peer in self.peers.reachable())]
        for node in nodes:
            node.live += self._placing[node.node_id]
        return nodes

    @contextlib.contextmanager
    def placing(self, node_id: str) -> Iterator[None]:
        """A new context is on its way to ``node_id`` while this lasts."""
        self._placing[node_id] += 1
        try:
            yield
        finally:
            self._placing[node_id] -= 1

    async def list_contexts(self) -> dict[str, Any]:
        """Every node's contexts, and the nodes that did not answer (a node known to be
        unreachable is not asked: its contexts answer 503 at once, and so does it here)."""
        items = [context.describe() for context in self.registry.list()]
        others = self.peers.others()
        unreachable = [p.node_id or p.url for p in others if p.read and not p.reachable]
        asked = [p for p in others if p.reachable]
        answers = await asyncio.gather(*(self._peer_contexts(p.url) for p in asked))
        for peer, answer in zip(asked, answers, strict=True):
            if answer is None:
                unreachable.append(peer.node_id or peer.url)
            else:
                items += answer
        return {"items": items, "unreachable": sorted(unreachable)}

    async def _peer_contexts(self, url: str) -> list[dict[str, Any]] | None:
        try:
            response = await self.http.get(
                url + "/contexts",
                headers={
                    "Authorization": f"Bearer {self.token}",
                    forward.FORWARDED.decode(): self.sender,
                },
                timeout=LIST_TIMEOUT_S,
            )
            response.raise_for_status()
            return list(response.json()["items"])
        except Exception:  # any failure means: this node did not answer
            return None
