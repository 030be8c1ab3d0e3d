"""A context gone without its client's doing answers a 404 that says why."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import Server


def _not_found(client, context_id: str) -> str:  # noqa: ANN001 - a tests.conftest.Client
    response = client.post("/execute", json={"code": "1", "context_id": context_id})
    assert response.status_code == 404, response.text
    get = client.get(f"/contexts/{context_id}")
    assert get.status_code == 404 and get.json() == response.json()
    return response.json()["message"]


def test_a_deleted_context_answers_the_plain_404(client) -> None:  # noqa: ANN001
    context_id = client.context()
    assert client.delete(f"/contexts/{context_id}").status_code == 204
    assert _not_found(client, context_id) == f"context {context_id} not found"


def test_a_context_removed_for_idleness_says_so() -> None:
    server = Server(idle_timeout_s=1).start()
    try:
        with server.client() as client:
            context_id = client.context()
            deadline = time.monotonic() + 30
            while client.get(f"/contexts/{context_id}").status_code == 200:
                assert time.monotonic() < deadline, "the idle context was never removed"
                time.sleep(0.2)
            message = _not_found(client, context_id)
            assert message.startswith(f"context {context_id} not found: ")
            assert "1 s without use" in message and "state and files are gone" in message
    finally:
        server.stop()
        server.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["stopped", "killed"])
def test_contexts_lost_by_a_server_restart_say_so(stop: signal.Signals) -> None:
    server = Server().start()
    try:
        with server.client() as client:
            lost = [client.context(), client.context("typescript")]
            deleted = client.context()
            client.run("x = 1", context_id=lost[0])
            assert client.delete(f"/contexts/{deleted}").status_code == 204
        server.stop(stop)
        server.start()
        with server.client() as client:
            for context_id in lost:
                message = _not_found(client, context_id)
                assert message.startswith(f"context {context_id} not found: ")
                assert "lost when the server stopped" in message
            assert _not_found(client, deleted) == f"context {deleted} not found"
            survivor = client.context()  # the new run works, and its contexts are its own
            assert client.run("1 + 1", context_id=survivor)["items"][0]["text"] == "2"
        server.stop()
        server.start()  # a second restart: only the contexts live at the first one's end
        with server.client() as client:
            assert "lost when the server stopped" in _not_found(client, survivor)
            assert _not_found(client, lost[0]) == f"context {lost[0]} not found"
    finally:
        server.stop()
        server.cleanup()
