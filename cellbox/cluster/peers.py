"""The cluster's other nodes: found from static URLs or DNS records, read through ``/metrics``.

Every few seconds (``--peer-refresh-s``) each peer's ``/metrics`` is read: it tells the
peer's node id and the levels placement needs, and a peer that does not answer within a
second is marked unreachable (its in-flight forwarded requests are aborted). With
``dns:NAME:PORT`` the name is looked up again each round, so pods that come and go (the
records of a Kubernetes headless Service are its ready pods) are followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx
from prometheus_client.parser import text_string_to_metric_families

from cellbox import metrics
from cellbox.cluster.capacity import Capacity
from cellbox.cluster.identity import parse_peers

log = logging.getLogger("cellbox.cluster")

POLL_TIMEOUT_S = 0.9  # with the 1 s refresh: a hung node is noticed within 2 s


class Abortable(Protocol):
    def abort(self, reason: str) -> None: ...


class Peer:
    """One other node, as last seen at one URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.node_id: str | None = None
        self.reachable = False
        self.read = False  # asked at least once (a peer not asked yet is not unreachable)
        self.live = 0
        self.max_contexts = 0
        self.memory_available_bytes = 0
        self.exchanges: set[Abortable] = set()  # forwarded requests in flight

    def capacity(self) -> Capacity:
        assert self.node_id is not None
        return Capacity(self.node_id, self.live, self.max_contexts, self.memory_available_bytes)

    def mark_down(self) -> None:
        """It stopped answering: abort what waits on it; placement skips it until it answers."""
        if self.reachable:
            log.warning("node %s (%s) is unreachable", self.node_id, self.url)
        self.reachable = False
        for exchange in list(self.exchanges):
            exchange.abort("unreachable")

    def leave(self) -> None:
        """Its record is gone (a pod that is stopping, or no longer ready): no new request
        goes to it, but those in flight finish, as the node drains them before it stops;
        if it dies instead, each of them sees that on its own connection."""
        if self.reachable:
            log.warning("node %s (%s) left the peers' records", self.node_id, self.url)
        self.reachable = False

    def update(self, exposition: str) -> None:
        """Take the node id and levels from the peer's ``/metrics`` text."""
        live = 0
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name == metrics.NODE_INFO:
                    self.node_id = sample.labels["node"]
                elif sample.name == metrics.LIVE:
                    live += int(sample.value)
                elif sample.name == metrics.MAX:
                    self.max_contexts = int(sample.value)
                elif sample.name == metrics.MEMORY:
                    self.memory_available_bytes = int(sample.value)
        self.live = live
        if not self.reachable:
            log.info("node %s (%s) is reachable", self.node_id, self.url)
        self.reachable = True


class Peers:
    """The other nodes, kept fresh by :meth:`run`."""

    def __init__(
        self,
        spec: str,
        node_id: str,
        token: str,
        client: httpx.AsyncClient,
        dns_server: str = "",
        sender: str = "",
    ) -> None:
        self.node_id = node_id
        self._sender = sender or node_id  # the X-Cellbox-Forwarded value of this node
        self.known_nodes: set[str] = set()  # every node id seen since this node started
        self._urls, self._names = parse_peers(spec)
        self._token = token
        self._client = client
        self._by_url: dict[str, Peer] = {}
        self._found: dict[tuple[str, int], list[str]] = {}  # the last answer for each name
        self._unanswered: set[tuple[str, int]] = set()  # names whose last lookup failed
        self._resolver = _resolver(dns_server) if self._names else None

    def others(self) -> list[Peer]:
        """Every peer URL of the last round except this node's own."""
        return [p for p in self._by_url.values() if p.node_id != self.node_id]

    def reachable(self) -> list[Peer]:
        return [p for p in self.others() if p.reachable and p.node_id is not None]

    def find(self, node_id: str) -> Peer | None:
        """The peer that is node ``node_id`` (a reachable one if several URLs claim it)."""
        found = [p for p in self.others() if p.node_id == node_id]
        found.sort(key=lambda p: not p.reachable)
        return found[0] if found else None

    def all_known(self) -> bool:
        """Whether every peer URL has told its node id (so an unknown id is nobody's)."""
        return all(p.node_id is not None for p in self._by_url.values())

    async def run(self, period_s: float, listening: asyncio.Event) -> None:
        """Refresh every ``period_s`` (a round that waited on a hung peer does not delay the
        next), from when this node listens: its own URL is among the peers', and read before
        it answers it would pass for an unreachable node."""
        loop = asyncio.get_running_loop()
        try:
            await self.look_up()  # the URLs are known (``all_known`` is False) meanwhile
        except Exception:
            log.exception("looking the peers up failed")
        await listening.wait()
        while True:
            began = loop.time()
            try:
                await self.refresh()
            except Exception:  # a bad round must not end the refreshing for good
                log.exception("refreshing the peers failed")
            await asyncio.sleep(max(0.0, period_s - (loop.time() - began)))

    async def refresh(self) -> None:
        """Look the peers up again and read every one's ``/metrics``."""
        await self.look_up()
        await asyncio.gather(*(self._poll(peer) for peer in self._by_url.values()))

    async def look_up(self) -> None:
        """The peers' URLs: the static ones and what the names resolve to now."""
        urls = list(self._urls)
        for name, port in self._names:
            found = await self._lookup(name, port)
            if found is None:  # no answer this round: the nodes are those of the last one
                found = self._found.get((name, port), [])
            self._found[(name, port)] = found
            urls += found
        for url in set(self._by_url) - set(urls):
            self._by_url.pop(url).leave()
        for url in urls:
            self._by_url.setdefault(url, Peer(url))

    async def _poll(self, peer: Peer) -> None:
        try:
            response = await self._client.get(
                peer.url + "/metrics",
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "X-Cellbox-Forwarded": self._sender,
                },
                timeout=POLL_TIMEOUT_S,
            )
            response.raise_for_status()
            peer.update(response.text)
        except Exception as exc:  # whatever went wrong, this peer did not answer usably
            if peer.reachable:
                log.warning("reading %s/metrics failed: %s", peer.url, exc)
            peer.mark_down()
            return
        finally:
            peer.read = True  # once answered or failed: never while the first try is on
        if peer.node_id is not None:
            self.known_nodes.add(peer.node_id)

    async def _lookup(self, name: str, port: int) -> list[str] | None:
        """``http://address:port`` for each A and AAAA record of ``name``; None if the
        resolver did not answer (a timeout, a server failure), which says nothing of the
        nodes, unlike an answer without records (no node is ready)."""
        assert self._resolver is not None
        urls: list[str] = []
        for kind in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(name, kind, search=True)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                if (name, port) not in self._unanswered:
                    log.warning("looking up the peers' name %s failed: %s", name, exc)
                self._unanswered.add((name, port))
                return None
            for record in answer:
                address = ipaddress.ip_address(record.address)
                host = f"[{address}]" if address.version == 6 else str(address)
                urls.append(f"http://{host}:{port}")
        self._unanswered.discard((name, port))
        return sorted(urls)


def _resolver(server: str) -> dns.asyncresolver.Resolver:
    """The system's resolver, or the one at ``host[:port]``; answers never older than a round."""
    if not server:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
        resolver.nameservers = [host]
        resolver.port = int(port) if port else 53
    resolver.lifetime = POLL_TIMEOUT_S
    resolver.cache = None
    return resolver
