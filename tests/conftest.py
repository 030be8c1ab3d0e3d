"""Fixtures: the real cellbox server, started as a process and spoken to over HTTP."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-m", "cellbox.cli", "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ``cellbox serve`` process with its own state directory and token."""

    def __init__(self, **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(24)
        self.state_dir = Path(tempfile.mkdtemp(prefix="cellbox-test-"))
        os.chmod(self.state_dir, 0o755)
        self.env = {
            **os.environ,
            "CELLBOX_API_KEY": self.token,
            "CELLBOX_STATE_DIR": str(self.state_dir),
            "CELLBOX_PORT": str(self.port),
            "CELLBOX_INTERRUPT_GRACE_S": "1",
            "CELLBOX_LOG_LEVEL": "warning",
        }
        for name, value in settings.items():
            self.env["CELLBOX_" + name.upper()] = str(value)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        return self.launch(SERVE)

    def launch(self, argv: list[str]) -> Server:
        """Run ``argv`` (which ends in ``cellbox serve``) and wait until it answers."""
        self.log = open(self.state_dir / "server.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.read_log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.read_log()}")

    def read_log(self) -> str:
        return (self.state_dir / "server.log").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def cleanup(self) -> None:
        # a server killed without its shutdown leaves its disk quota volume mounted there
        subprocess.run(
            ["umount", "-l", str(self.state_dir / "contexts")], capture_output=True, check=False
        )
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def client(self, **kwargs: Any) -> Client:
        return Client(self, **kwargs)


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
