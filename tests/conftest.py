"""Fixtures: the real cellbox server, started as a process and spoken to over HTTP."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cellbox.serve_process import SERVE, ServeProcess

ROOT = Path(__file__).resolve().parent.parent
# A package no registry publishes, so no cache on this machine can hold it: an install of it
# that must fail for want of network fails for that reason alone, whatever earlier runs cached.
UNPUBLISHED = f"cellbox-unpublished-{secrets.token_hex(4)}"


class Server(ServeProcess):
    """A ``cellbox serve`` process with its own state directory and token."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(
            {"interrupt_grace_s": 1, "log_level": "warning", **settings}, prefix="cellbox-test-"
        )

    def start(self) -> Server:
        return self.launch(SERVE)

    def launch(self, argv: list[str]) -> Server:  # type: ignore[override]
        """Run ``argv`` (which ends in ``cellbox serve``) and wait until it answers."""
        super().launch(argv, cwd=ROOT)
        return self

    def client(self, **kwargs: Any) -> Client:
        return Client(self, **kwargs)


# A first line for code that a test interrupts, restarts or deletes while it runs: it makes
# the file ``started`` in the work directory, which ``Client.wait_started`` waits for.
STARTED = {
    "python": "open('started', 'w').close()\n",
    "typescript": "require('fs').writeFileSync('started', '');\n",
}


class Client(httpx.Client):
    """An HTTP client of the server with the token set, plus shortcuts."""

    def __init__(self, server: Server, **kwargs: Any) -> None:
        headers = {"Authorization": f"Bearer {server.token}"}
        super().__init__(base_url=server.url, headers=headers, timeout=60, **kwargs)

    def run(self, code: str, expect: int = 200, **fields: Any) -> dict[str, Any]:
        response = self.post("/execute", json={"code": code, **fields})
        assert response.status_code == expect, response.text
        return response.json()

    def context(self, language: str = "python", **fields: Any) -> str:
        response = self.post("/contexts", json={"language": language, **fields})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def wait_started(self, context_id: str, timeout: float = 30) -> None:
        """Wait until code that begins with ``STARTED`` runs in the context."""
        path = f"/contexts/{context_id}/files/started"
        deadline = time.monotonic() + timeout
        while self.get(path).status_code != 200:
            assert time.monotonic() < deadline, f"no code started in {context_id} in {timeout} s"
            time.sleep(0.02)
        self.delete(path)  # for the next time

    def events(self, code: str, **fields: Any) -> list[dict[str, Any]]:
        """All SSE events of one ``/execute/async`` call, parsed."""
        with self.stream_events(code, **fields) as events:
            return list(events)

    def stream_events(self, code: str, **fields: Any) -> SSE:
        return SSE(self, {"code": code, **fields})


class SSE:
    """``with client.stream_events(code) as events: for event in events: ...``"""

    def __init__(self, client: Client, body: dict[str, Any]) -> None:
        self._context = client.stream("POST", "/execute/async", json=body)

    def __enter__(self) -> Iterator[dict[str, Any]]:
        self.response = self._context.__enter__()
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        return self._events()

    def _events(self) -> Iterator[dict[str, Any]]:
        buffer = ""
        for text in self.response.iter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                assert block.startswith("data: "), block
                yield orjson.loads(block[len("data: ") :])

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    srv = Server().start()
    yield srv
    srv.stop()
    srv.cleanup()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def ctx(client: Client) -> Iterator[str]:
    """A fresh Python context, deleted afterwards."""
    context_id = client.context("python")
    yield context_id
    client.delete(f"/contexts/{context_id}")
