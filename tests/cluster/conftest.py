"""Several real cellbox nodes on loopback, started with the suite's own server launcher."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import Client, Server

FORWARDED = {"X-Cellbox-Forwarded": "test"}  # makes a node answer a request itself


def start_nodes(nodes: list[Server], peers: str) -> None:
    """Start the nodes side by side, all with one token and one list of peers."""
    for node in nodes:
        node.token = nodes[0].token
        node.env["CELLBOX_API_KEY"] = nodes[0].token
        node.env["CELLBOX_PEERS"] = peers
    failures: list[BaseException] = []

    def start(node: Server) -> None:
        try:
            node.start()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        stop_nodes(nodes)
        raise failures[0]


def stop_nodes(nodes: list[Server]) -> None:
    for node in nodes:
        if node.process is not None:
            node.stop()
        node.cleanup()


@contextmanager
def running(nodes: list[Server]) -> Iterator[list[Server]]:
    """The nodes started as one cluster (each the others' peer), until they have all met."""
    start_nodes(nodes, ",".join(node.url for node in nodes))
    try:
        for node in nodes:
            with node.client() as client:
                wait_for_peers(client, len(nodes) - 1, only=True)
        yield nodes
    finally:
        stop_nodes(nodes)


def wait_for_peers(client: Client, count: int, timeout: float = 45, only: bool = False) -> None:
    """Until this node has read ``count`` reachable peers (``only``: and no other URL, so it
    has also told its own URL apart: its first look at itself comes before it listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        peers = client.get("/info").json()["cluster"]["peers"]
        found = sum(1 for p in peers if p["reachable"] and p["node"])
        if found == count and (not only or len(peers) == count):
            return
        time.sleep(0.1)
    raise AssertionError(f"peers not seen: {client.get('/info').json()['cluster']}")


def context_on(node: Server, language: str = "python") -> str:
    """A context created on ``node`` itself."""
    with node.client() as client:
        response = client.post("/contexts", json={"language": language}, headers=FORWARDED)
        assert response.status_code == 201, response.text
        return response.json()["id"]


def node_of(context_id: str) -> str:
    return context_id.split("_")[1]


class Cluster:
    def __init__(self, nodes: list[Server]) -> None:
        self.nodes = nodes
        self.ids = [node.env["CELLBOX_NODE_ID"] for node in nodes]

    def client(self, index: int = 0, **kwargs: Any) -> Client:
        return self.nodes[index].client(**kwargs)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    nodes = [
        Server(node_id=f"n{i}", pool_python=1, pool_typescript=0, max_contexts=4) for i in range(3)
    ]
    with running(nodes):
        yield Cluster(nodes)


@pytest.fixture
def c0(cluster: Cluster) -> Iterator[Client]:
    with cluster.client(0) as client:
        yield client
    # every test leaves the cluster empty for the next
    for node in cluster.nodes:
        if node.process is not None and node.process.poll() is None:
            with node.client() as local:
                for item in local.get("/contexts", headers=FORWARDED).json()["items"]:
                    local.delete(f"/contexts/{item['id']}")
    wait_until_seen_empty(cluster)


def wait_until_seen_empty(cluster: Cluster, timeout: float = 15) -> None:
    """Until every live node's last reading of its peers shows them empty: placement in the
    next test must not act on levels left over from this one."""
    live = [n for n in cluster.nodes if n.process is not None and n.process.poll() is None]
    deadline = time.monotonic() + timeout
    for node in live:
        with node.client() as client:
            while True:
                peers = client.get("/info").json()["cluster"]["peers"]
                if all(p["contexts"] == 0 for p in peers if p["reachable"]):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"peers still show contexts: {peers}")
                time.sleep(0.1)
