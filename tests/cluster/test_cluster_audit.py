"""Two nodes used as an operator would: through a node that does not own the context, every
answer is the owner's, limits included; bursts are spread; a node that shuts down says so."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster.conftest import (
    FORWARDED,
    Cluster,
    context_on,
    node_of,
    running,
    start_nodes,
    stop_nodes,
    wait_until_seen_empty,
)
from tests.conftest import STARTED, Server

UPLOAD_LIMIT_MB = 2


@pytest.fixture(scope="module")
def pair() -> Iterator[list[Server]]:
    nodes = [
        Server(
            node_id=f"a{i}",
            pool_python=1,
            pool_typescript=0,
            max_contexts=4,
            upload_limit_mb=UPLOAD_LIMIT_MB,
            shutdown_grace_s=10,
        )
        for i in range(2)
    ]
    with running(nodes):
        yield nodes


@pytest.fixture(autouse=True)
def empty_afterwards(pair) -> Iterator[None]:
    """Each test leaves the nodes empty, and seen empty, for the next one's placement."""
    yield
    for node in pair:
        if node.process is not None and node.process.poll() is None:
            with node.client() as client:
                for item in client.get("/contexts", headers=FORWARDED).json()["items"]:
                    client.delete(f"/contexts/{item['id']}")
    wait_until_seen_empty(Cluster(pair))


def _peer_reachable(node: Server) -> bool:
    with node.client() as client:
        return all(p["reachable"] for p in client.get("/info").json()["cluster"]["peers"])


def test_an_upload_past_the_limit_through_another_node_is_the_owners_413(pair):
    """The owner answers 413 before it has read the body (and closes the connection once it
    has dropped up to 64 MiB of it): the forwarding node passes that answer on. It used to
    take the broken pipe for a dead node: a 503 'node is unreachable', the peer marked
    down, and every other request forwarded to it at that moment cut short."""
    context = context_on(pair[1])
    size = 100 << 20  # well past what the owner drops before closing
    limit = UPLOAD_LIMIT_MB << 20
    with pair[0].client() as client:
        declared = client.put(f"/contexts/{context}/files/big.bin", content=bytes(size))
        assert declared.status_code == 413, declared.text
        assert declared.json() == {"message": f"request body too large (limit {limit} bytes)"}

        def pieces() -> Iterator[bytes]:  # no length given: the route counts to its limit
            for _ in range(8):
                yield bytes(1 << 20)

        chunked = client.put(f"/contexts/{context}/files/big.bin", content=pieces())
        assert chunked.status_code == 413, chunked.text
        assert chunked.json() == {"message": f"upload larger than the limit ({limit} bytes)"}
        assert _peer_reachable(pair[0])
        listed = client.get(f"/contexts/{context}/files").json()["items"]
        assert listed == []  # nothing of either upload was kept
        assert client.run("1 + 1", context_id=context)["items"][0]["text"] == "2"


def test_head_of_the_context_list_is_that_of_its_get(pair):
    context_on(pair[1])
    with pair[0].client() as client:
        listed = client.get("/contexts")
        head = client.head("/contexts")
        assert len(listed.json()["items"]) == 1
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == listed.headers["content-length"]


def test_a_burst_of_new_contexts_is_spread_over_the_nodes(pair):
    """Concurrent creations through one node all saw the same levels and went to the same
    node; each counts now where it goes, so the burst is spread as it arrives."""

    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {pair[0].token}"}
        async with httpx.AsyncClient(base_url=pair[0].url, headers=headers, timeout=60) as client:
            return await asyncio.gather(*(client.post("/contexts", json={}) for _ in range(4)))

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    ids = [a.json()["id"] for a in answers]
    assert Counter(map(node_of, ids)) == {"a0": 2, "a1": 2}


def test_two_nodes_given_one_id_say_so():
    """Context ids name their node, so two nodes with one id answer each other's contexts
    with 404: each says it, in its log and in GET /info, instead of misbehaving silently.
    A node that lists itself among its peers (as the README's example does) is no twin."""
    twins = [Server(node_id="twin", pool_python=0, pool_typescript=0) for _ in range(2)]
    start_nodes(twins, ",".join(node.url for node in twins))
    try:
        for node in twins:
            with node.client() as client:
                deadline = time.monotonic() + 15
                while not client.get("/info").json()["cluster"]["duplicate_id"]:
                    assert time.monotonic() < deadline, node.log_tail()
                    time.sleep(0.1)
            assert "another node also has the node id 'twin'" in node.read_log()
    finally:
        stop_nodes(twins)
    single = Server(node_id="solo", pool_python=0, pool_typescript=0)
    start_nodes([single], single.url)  # its only peer is itself
    try:
        with single.client() as client:
            time.sleep(1.2)  # a stats read of itself or more
            assert client.get("/info").json()["cluster"]["duplicate_id"] is False
    finally:
        stop_nodes([single])


def test_a_node_shutting_down_is_not_ready_and_finishes_what_it_forwarded(pair):
    """Last in this module: node a0 is stopped while an execution it forwarded runs on a1.
    While it drains, its readiness probe answers 503 (Kubernetes takes it out of the
    Services), liveness stays 200, new contexts go to a1, and the forwarded execution gets
    the grace period to finish like one of its own (uvicorn's 5 s cut it with a plain-text
    500)."""
    context = context_on(pair[1])
    results: list[httpx.Response] = []
    code = STARTED["python"] + "import time; time.sleep(6); 'done'"
    with pair[0].client() as client:
        running = threading.Thread(
            target=lambda: results.append(
                client.post("/execute", json={"code": code, "context_id": context})
            )
        )
        running.start()
        try:
            with pair[1].client() as other:
                other.wait_started(context)
                pair[0].process.send_signal(signal.SIGTERM)
                with pair[0].client() as own:
                    ready = own.get("/healthz", params={"ready": "true"})
                    while ready.status_code == 200:  # until the signal is handled
                        ready = own.get("/healthz", params={"ready": "true"})
                    assert ready.status_code == 503
                    assert ready.json() == {"status": "shutting down"}
                    assert own.get("/healthz").json() == {"status": "ok"}
                placed = other.post("/contexts", json={})
                assert placed.status_code == 201, placed.text
                assert node_of(placed.json()["id"]) == "a1"
        finally:
            running.join()
    assert pair[0].process.wait(30) == 0
    assert results[0].status_code == 200, results[0].text
    assert results[0].json()["items"][0]["text"] == "'done'"
