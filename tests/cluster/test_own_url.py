"""A node finds its own URL among its peers (one list for all nodes) and never reports
itself unreachable, also not in the moments after it starts."""

from __future__ import annotations

import time

from cellbox.serve_process import free_port
from tests.cluster.conftest import start_nodes, stop_nodes
from tests.conftest import Server


def test_a_node_never_lists_itself_as_unreachable():
    node = Server(node_id="self0", pool_python=0, pool_typescript=0, peer_refresh_s=3)
    dead = f"http://127.0.0.1:{free_port()}"  # a peer URL nothing listens on
    start_nodes([node], f"{node.url},{dead}")
    try:
        seen: list[list[str]] = []
        with node.client() as client:
            deadline = time.monotonic() + 10
            while dead not in (seen[-1] if seen else []) and time.monotonic() < deadline:
                answer = client.get("/contexts")
                assert answer.status_code == 200, answer.text
                seen.append(answer.json()["unreachable"])
                time.sleep(0.02)
        assert all(node.url not in listed and "self0" not in listed for listed in seen), seen
        assert seen[-1] == [dead]  # a peer that does not answer is still reported
    finally:
        stop_nodes([node])
