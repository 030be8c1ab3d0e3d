"""A client that hangs up on ``/execute/async`` as soon as it has read the exit event (as SSE
readers that stop at ``exit`` do) has heard everything, a loss of state included."""

from __future__ import annotations

from tests.conftest import Client


def _until_exit(client: Client, ctx: str, code: str) -> list[dict]:
    with client.stream_events(code, context_id=ctx) as events:
        seen = []
        for event in events:
            seen.append(event)
            if event["type"] == "exit":
                return seen  # hang up here, without reading the end of the stream
    raise AssertionError(f"no exit event in {seen}")


def test_a_loss_told_to_a_client_that_hangs_up_at_the_exit_event_is_heard(client: Client):
    ctx = client.context()
    died = _until_exit(client, ctx, "import os; os.kill(os.getpid(), 9)")
    assert [e.get("name") for e in died if e["type"] == "error"] == ["ContextDied"]
    for _ in range(2):
        after = _until_exit(client, ctx, "1 + 1")
        assert [e["type"] for e in after] == ["result", "exit"], after
    client.delete(f"/contexts/{ctx}")
