"""Starting the real cellbox server as a subprocess, and a small client for its API."""

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
from pathlib import Path

import httpx


class ApiError(RuntimeError):
    """A non-2xx answer, or a 200 whose ``error`` is set when none was expected."""

    def __init__(self, message: str, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cellbox_command() -> list[str]:
    """The ``cellbox`` console script next to this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "cellbox"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("cellbox")
    if found:
        return [found]
    return [sys.executable, "-c", "from cellbox.cli import main; main()"]


class Server:
    """``cellbox serve`` on a free loopback port, with its own API key and state dir."""

    def __init__(self, extra_args: list[str]) -> None:
        self.extra_args = extra_args
        self.api_key = secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="cellbox-bench-server-")
        self.state_dir = Path(self._tmp.name) / "state"
        self.state_dir.mkdir()
        self.log_path = Path(self._tmp.name) / "server.log"
        self.command = [
            *cellbox_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *extra_args,
        ]
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 60.0) -> float:
        """Start the server and wait for ``GET /healthz`` 200; returns seconds taken."""
        env = dict(os.environ)
        env["CELLBOX_API_KEY"] = self.api_key
        env["CELLBOX_STATE_DIR"] = str(self.state_dir)
        log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.process = subprocess.Popen(
            self.command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not healthy after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> str:
        """SIGINT, then SIGKILL to the whole session after ``grace`` seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return "not running"
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace)
            how = f"exited on SIGINT (code {process.returncode})"
        except subprocess.TimeoutExpired:
            how = f"killed after {grace} s"
        # Anything the server left in its session (workers, sandboxes) goes too.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
        return how

    def cleanup(self) -> None:
        self._tmp.cleanup()


class Api:
    """Synchronous client on one keep-alive connection."""

    def __init__(self, url: str, api_key: str, timeout: float = 120.0) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.client = httpx.Client(base_url=url, headers=self.headers, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def timed_execute(
        self, code: str, language: str | None = None, context_id: str | None = None
    ) -> tuple[int, dict]:
        """(nanoseconds around the HTTP request, response body). Raises ApiError."""
        body: dict = {"code": code}
        if language is not None:
            body["language"] = language
        if context_id is not None:
            body["context_id"] = context_id
        t0 = time.perf_counter_ns()
        response = self.client.post("/execute", json=body)
        elapsed = time.perf_counter_ns() - t0
        return elapsed, check_execute(response)

    def execute(
        self, code: str, language: str | None = None, context_id: str | None = None
    ) -> dict:
        return self.timed_execute(code, language, context_id)[1]

    def delete(self, context_id: str) -> None:
        response = self.client.delete(f"/contexts/{context_id}")
        if response.status_code not in (204, 404):
            raise ApiError(
                f"DELETE /contexts/{context_id} -> {response.status_code}",
                response.status_code,
                response.text[:500],
            )

    def get_context(self, context_id: str) -> dict:
        response = self.client.get(f"/contexts/{context_id}")
        if response.status_code != 200:
            raise ApiError(
                f"GET /contexts/{context_id} -> {response.status_code}",
                response.status_code,
                response.text[:500],
            )
        return response.json()

    def check_auth(self) -> None:
        response = self.client.get("/contexts")
        if response.status_code != 200:
            raise ApiError(f"GET /contexts -> {response.status_code}", response.status_code)


def check_execute(response: httpx.Response) -> dict:
    """The body of a successful execution; ApiError for HTTP errors or a cell error."""
    if response.status_code != 200:
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        raise ApiError(
            f"POST /execute -> {response.status_code}: {body}", response.status_code, body
        )
    data = response.json()
    if data.get("error"):
        err = data["error"]
        raise ApiError(f"cell error {err.get('name')}: {err.get('value')}", 200, err)
    return data


def primary_text(data: dict) -> str | None:
    for item in data.get("items", []):
        if item.get("is_primary"):
            return item.get("text")
    return None
