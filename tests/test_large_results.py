"""A cell's value or error larger than the worker's output backlog still comes back.

The worker queues the value and the error of a cell to go out with its ``done`` frame, and
holds a writer back while more than its backlog limit (16 MiB) waits to be sent; a single
frame past that limit used to leave the cell waiting for a sender nobody had woken, until
its timeout killed the process and its state.
"""

from __future__ import annotations

from tests.conftest import Client

SIZE = 17 << 20  # past the worker's backlog limit


def test_a_value_past_the_backlog_limit_comes_back(client: Client, ctx: str) -> None:
    client.run("kept = 1", context_id=ctx)
    body = client.run(f"'v' * {SIZE}", context_id=ctx, timeout_ms=20000)
    assert body["error"] is None, body["error"]
    (item,) = body["items"]
    assert item["is_primary"] and len(item["text"]) == SIZE + 2  # the quotes of the repr
    assert client.run("kept", context_id=ctx)["items"][0]["text"] == "1"


def test_an_error_past_the_backlog_limit_comes_back(client: Client, ctx: str) -> None:
    client.run("kept = 1", context_id=ctx)
    body = client.run(f"raise ValueError('e' * {SIZE})", context_id=ctx, timeout_ms=20000)
    assert body["error"]["name"] == "ValueError", body["error"]["name"]
    assert body["error"]["value"] == "e" * SIZE
    assert client.run("kept", context_id=ctx)["items"][0]["text"] == "1"
