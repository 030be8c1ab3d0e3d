"""Peers from DNS records (``dns:NAME:PORT``, as a headless Service gives), against a resolver
the test runs: two nodes on two loopback addresses find each other, forward, and follow the
records when one is dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest

from tests.cluster.conftest import context_on, node_of, start_nodes, stop_nodes, wait_for_peers
from tests.conftest import STARTED, Server
from tests.dns_server import Answer, DnsServer

NAME = "cellbox-peers.cellbox.svc.cluster.local."


def answer_with(addresses: list[str]) -> Answer:
    """A queries for NAME answered with ``addresses`` (read at each query), others NXDOMAIN."""

    def answer(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        if question.name.to_text() != NAME:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            rrset = response.find_rrset(
                response.answer, question.name, question.rdclass, question.rdtype, create=True
            )
            for address in list(addresses):
                rrset.add(dns.rdata.from_text("IN", "A", address), ttl=1)
        return response

    return answer


@pytest.fixture(scope="module")
def dns_cluster() -> Iterator[tuple[list[str], DnsServer, list[Server]]]:
    addresses = ["127.0.0.2", "127.0.0.3"]
    resolver = DnsServer(answer_with(addresses))
    nodes = [Server(node_id=f"d{i}", pool_python=1, pool_typescript=0) for i in range(2)]
    port = nodes[0].port  # one port for every node, as a Service's pods have
    for node, address in zip(nodes, addresses, strict=True):
        node.port = port
        node.url = f"http://{address}:{port}"
        node.env.update(
            CELLBOX_HOST=address,
            CELLBOX_PORT=str(port),
            CELLBOX_PEER_DNS_SERVER=f"127.0.0.1:{resolver.port}",
        )
    start_nodes(nodes, f"dns:{NAME.rstrip('.')}:{port}")
    try:
        yield addresses, resolver, nodes
    finally:
        stop_nodes(nodes)
        resolver.close()


def test_nodes_found_by_dns_serve_as_one(dns_cluster):
    addresses, resolver, nodes = dns_cluster
    with nodes[0].client() as d0:
        wait_for_peers(d0, 1)
        assert NAME.rstrip(".") in resolver.asked
        peers = d0.get("/info").json()["cluster"]["peers"]
        assert [p["node"] for p in peers if p["reachable"]] == ["d1"]
        remote = context_on(nodes[1])
        assert d0.run("6 * 7", context_id=remote)["items"][0]["text"] == "42"
        placed = {node_of(d0.post("/contexts", json={}).json()["id"]) for _ in range(4)}
        assert placed == {"d0", "d1"}
        # the record of d1 goes away (its pod is no longer ready): d0 stops using it
        addresses.remove("127.0.0.3")
        deadline = time.monotonic() + 10
        while d0.get(f"/contexts/{remote}").status_code != 503:
            assert time.monotonic() < deadline, "the dropped record was not followed"
            time.sleep(0.2)
        assert d0.get(f"/contexts/{remote}").json() == {"message": "node d1 is unreachable"}
        assert {node_of(d0.post("/contexts", json={}).json()["id"]) for _ in range(2)} == {"d0"}


def test_a_resolver_that_stops_answering_leaves_the_peers_as_they_were(dns_cluster):
    """A lookup that times out says nothing of the nodes (unlike an answer without the
    record): the peers of the last answer stay, and their contexts keep answering."""
    addresses, resolver, nodes = dns_cluster
    if "127.0.0.3" not in addresses:  # the test before dropped it
        addresses.append("127.0.0.3")
    with nodes[0].client() as d0:
        wait_for_peers(d0, 1)
        remote = context_on(nodes[1])
        answer = resolver.answer
        resolver.answer = lambda query: None  # as from a resolver that is down
        try:
            asked = len(resolver.asked)
            deadline = time.monotonic() + 2.5  # two rounds of unanswered lookups
            while time.monotonic() < deadline:
                result = d0.post("/execute", json={"code": "1", "context_id": remote})
                assert result.status_code == 200, result.text
                time.sleep(0.2)
            assert len(resolver.asked) > asked
            assert [p["reachable"] for p in d0.get("/info").json()["cluster"]["peers"]] == [True]
        finally:
            resolver.answer = answer
        assert d0.delete(f"/contexts/{remote}").status_code == 204


def test_a_node_whose_record_goes_finishes_what_was_forwarded_to_it(dns_cluster):
    """A pod that stops leaves the headless Service's records at once, and drains what it
    accepted: a request forwarded to it before is left to finish (it was cut with a 503)."""
    addresses, resolver, nodes = dns_cluster
    if "127.0.0.3" not in addresses:
        addresses.append("127.0.0.3")
    with nodes[0].client() as d0:
        wait_for_peers(d0, 1)
        remote = context_on(nodes[1])
        code = STARTED["python"] + "import time; time.sleep(2); 'done'"
        results = []
        running = threading.Thread(
            target=lambda: results.append(
                d0.post("/execute", json={"code": code, "context_id": remote})
            )
        )
        running.start()
        try:
            d0.wait_started(remote)
            addresses.remove("127.0.0.3")
            deadline = time.monotonic() + 10
            while any(p["reachable"] for p in d0.get("/info").json()["cluster"]["peers"]):
                assert time.monotonic() < deadline, "the dropped record was not followed"
                time.sleep(0.1)
            assert d0.get(f"/contexts/{remote}").status_code == 503  # no new request goes
        finally:
            running.join()
            addresses.append("127.0.0.3")
        assert results[0].status_code == 200, results[0].text
        assert results[0].json()["items"][0]["text"] == "'done'"
        wait_for_peers(d0, 1)
        assert d0.delete(f"/contexts/{remote}").status_code == 204
