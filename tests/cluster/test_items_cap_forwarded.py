"""The rich item cap holds for executions forwarded from another node, answered whole or
streamed: the owner applies it, and the forwarding node passes its answer on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.conftest import context_on, running
from tests.conftest import Server
from tests.test_items_cap import CAP, HTML, PYTHON, check_items, dropped


@pytest.fixture(scope="module")
def pair() -> Iterator[list[Server]]:
    nodes = [
        Server(node_id=f"i{i}", items_cap_bytes=CAP, pool_python=1, pool_typescript=0)
        for i in range(2)
    ]
    with running(nodes):
        yield nodes


def test_forwarded_executions_are_capped(pair: list[Server]):
    context = context_on(pair[1])
    with pair[0].client() as client:
        body = client.run(PYTHON, context_id=context)
        check_items(body["items"], figure=True)
        assert dropped(body["logs"]["stderr"])[0] == 2
        events = client.events(PYTHON, context_id=context)
        check_items([e["data"] for e in events if e["type"] == "result"], figure=True)
        count, size = dropped([e["data"] for e in events if e["type"] == "stderr"])
        assert count == 2 and size > 2 * HTML
        assert events[-1]["context_id"] == context
        client.delete(f"/contexts/{context}")
