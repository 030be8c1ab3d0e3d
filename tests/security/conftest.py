"""Shared pieces of the security suite: servers with small limits, host-side process probes.

Every test here talks to a real ``cellbox serve`` over HTTP. What happens inside a context is
checked by running code there; what happens on the host (which uid a worker has, which
namespaces, whether anything survived a DELETE) is checked from this process, which runs as
root on CI and on the reference machine and can see every process.

The only skip allowed in this package: a server whose ``GET /info`` says its isolation is not
``"full"`` (a laptop without root, bubblewrap or cgroups). Then the tests that need the full
level are skipped with the reason the server itself reports.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SERVE, Client, Server
from tests.serving import Serving

MiB = 1 << 20

# Small limits keep the bombs fast; the numbers are asserted by the tests too.
SMALL_LIMITS: dict[str, Any] = {
    "memory_limit_mb": 256,
    "pids_limit": 64,
    "file_size_limit_mb": 16,
    "open_files_limit": 256,
    "output_cap_bytes": MiB,
    "pool_python": 1,
    "pool_typescript": 1,
}

# What the server process has in its environment and user code must never see.
SERVER_SECRET_VARS = {
    "CELLBOX_TEST_SECRET": "server-only-" + secrets.token_hex(8),
    "AWS_SECRET_ACCESS_KEY": "aws-" + secrets.token_hex(8),
}


# --------------------------------------------------------------------------- servers


def isolation(server: Server) -> dict[str, Any]:
    with server.client() as client:
        response = client.get("/info")
    assert response.status_code == 200, response.text
    return response.json()["isolation"]


def skip_unless_full(server: Server) -> None:
    """The one allowed skip: the host could not give full isolation (the server says why)."""
    info = isolation(server)
    if info.get("level") != "full":
        warnings = "; ".join(info.get("warnings") or []) or "no reason given"
        pytest.skip(f"sandbox isolation is {info.get('level')!r} on this host: {warnings}")


def start_server(**settings: Any) -> Server:
    server = Server(**settings)
    server.env.update(SERVER_SECRET_VARS)
    return server.start()


@pytest.fixture(scope="session")
def full_server_factory() -> Iterator[Callable[..., Server]]:
    """Start servers that must have full isolation; all are stopped at the end."""
    started: list[Server] = []

    def make(**settings: Any) -> Server:
        server = start_server(**settings)
        started.append(server)
        skip_unless_full(server)
        return server

    yield make
    for server in started:
        server.stop()
        server.cleanup()


# Shared by the whole package (a server start costs seconds). The hostile tests run against
# the same server on purpose: it must come out of them healthy.
@pytest.fixture(scope="session")
def limited(full_server_factory: Callable[..., Server]) -> Server:
    """A server with small limits and the network on."""
    return full_server_factory(**SMALL_LIMITS)


@pytest.fixture(scope="session")
def offline(full_server_factory: Callable[..., Server]) -> Server:
    """A server with small limits and the network switched off."""
    return full_server_factory(**SMALL_LIMITS, network="off")


@pytest.fixture(scope="module")
def api(limited: Server) -> Iterator[Client]:
    with limited.client() as client:
        yield client


# --------------------------------------------------------------------------- contexts


class Contexts:
    """Creates contexts on one server and deletes them at the end of the test."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ids: list[str] = []

    def new(self, language: str = "python") -> str:
        context_id = self.client.context(language)
        self.ids.append(context_id)
        return context_id

    def close(self) -> None:
        for context_id in self.ids:
            self.client.delete(f"/contexts/{context_id}")


@pytest.fixture
def contexts(api: Client) -> Iterator[Contexts]:
    made = Contexts(api)
    yield made
    made.close()


def run_ok(client: Client, code: str, **fields: Any) -> dict[str, Any]:
    """Run code that must succeed; return the response body."""
    body = client.run(code, **{"timeout_ms": 20000, **fields})
    assert body["error"] is None, body
    return body


def value(client: Client, code: str, **fields: Any) -> Any:
    """The primary result of ``code``, evaluated with ``eval`` on its text (Python repr)."""
    body = run_ok(client, code, **fields)
    primary = [item for item in body["items"] if item.get("is_primary")]
    assert primary, body
    return primary[0]["text"]


def py_value(client: Client, code: str, **fields: Any) -> Any:
    """Run Python code whose last expression is a literal; return it as a Python value."""
    return ast.literal_eval(value(client, code, **fields))


def ts_json(client: Client, code: str, **fields: Any) -> Any:
    """Run the body of an async TypeScript function; return its JSON-able result."""
    wrapped = f"console.log(JSON.stringify(await (async () => {{\n{code}\n}})()))"
    body = run_ok(client, wrapped, **fields)
    return json.loads("\n".join(body["logs"]["stdout"]))


def describe(client: Client, context_id: str) -> dict[str, Any]:
    response = client.get(f"/contexts/{context_id}")
    assert response.status_code == 200, response.text
    return response.json()


def assert_healthy(server: Server) -> None:
    response = httpx.get(server.url + "/healthz", timeout=10)
    assert response.status_code == 200, response.text
    assert server.process is not None and server.process.poll() is None


class Bystanders:
    """A Python and a TypeScript context holding a value that must survive anything."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.secret = secrets.token_hex(8)
        self.python = client.context("python")
        self.typescript = client.context("typescript")
        run_ok(client, f"bystander = {self.secret!r}", context_id=self.python)
        run_ok(client, f"var bystander = {self.secret!r}", context_id=self.typescript)

    def check(self) -> None:
        assert value(self.client, "bystander", context_id=self.python) == repr(self.secret)
        assert value(self.client, "bystander", context_id=self.typescript) == repr(self.secret)

    def close(self) -> None:
        for context_id in (self.python, self.typescript):
            self.client.delete(f"/contexts/{context_id}")


@pytest.fixture(scope="module")
def bystanders(api: Client) -> Iterator[Bystanders]:
    made = Bystanders(api)
    yield made
    made.close()


# --------------------------------------------------------------------------- host side


def host_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _read(path: str, mode: str = "r") -> Any:
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return b"" if "b" in mode else ""


def cmdline(pid: int) -> bytes:
    return _read(f"/proc/{pid}/cmdline", "rb")


def status(pid: int) -> dict[str, str]:
    fields = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        key, _, rest = line.partition(":")
        fields[key] = rest.strip()
    return fields


def namespace(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def cwd_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def pids_with_marker(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker`` (this process's children excepted)."""
    needle = marker.encode()
    return [pid for pid in host_pids() if pid != os.getpid() and needle in cmdline(pid)]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(step)


def cgroup_dirs(pid: int) -> list[Path]:
    """The cgroup directories (v1: one per controller; v2: one) of a host process."""
    dirs: list[Path] = []
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in ("memory", "pids"):
            dirs.append(Path("/sys/fs/cgroup", controllers) / path.lstrip("/"))
        elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            dirs.append(Path("/sys/fs/cgroup") / path.lstrip("/"))
    return dirs


def worker_host_pid(client: Client, context_id: str) -> int:
    """The host pid of the process that runs the context's code."""
    info = describe(client, context_id)
    if info["language"] == "python":
        inner = py_value(client, "__import__('os').getpid()", context_id=context_id)
    else:
        inner = int(value(client, "process.pid", context_id=context_id))
    home = f"HOME={info['cwd']}".encode()
    for pid in host_pids():
        nspid = status(pid).get("NSpid", "").split()
        if not nspid or int(nspid[-1]) != inner:
            continue
        if cwd_of(pid) == info["cwd"] or home in _read(f"/proc/{pid}/environ", "rb").split(b"\0"):
            return pid
    raise AssertionError(f"no host process runs context {context_id} (inner pid {inner})")


def unit_pids(worker_pid: int) -> set[int]:
    """Every host process of the worker's unit: its cgroups' members and its pid namespace."""
    found: set[int] = set()
    for directory in cgroup_dirs(worker_pid):
        for line in _read(str(directory / "cgroup.procs")).split():
            found.add(int(line))
    try:
        pid_ns = namespace(worker_pid, "pid")
    except OSError:
        return found
    for pid in host_pids():
        try:
            if namespace(pid, "pid") == pid_ns:
                found.add(pid)
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    state = status(pid).get("State", "")
    return bool(state) and not state.startswith(("Z", "X"))


# --------------------------------------------------------------------------- a listener


class Listener(Serving):
    """A TCP listener on 127.0.0.1 that greets and counts every connection it accepts."""

    GREETING = b"hello-from-the-host"

    def __init__(self, host: str = "127.0.0.1") -> None:
        sock = socket.socket()
        sock.bind((host, 0))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self.accepted = 0
        super().__init__(sock)

    def serve_once(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.accepted += 1
        with conn:
            conn.sendall(self.GREETING)


# --------------------------------------------------------------------------- servers with a
# different host: run ``cellbox serve`` inside a private mount namespace of this process's
# making, where bubblewrap or the cgroup hierarchies do not exist.


class HostServer(Server):
    """A server started through a shell prelude (as root: ``unshare --mount`` + mounts)."""

    def __init__(self, prelude: str, **settings: Any) -> None:
        super().__init__(**settings)
        self.env.update(SERVER_SECRET_VARS)
        self.prelude = prelude

    def start(self) -> HostServer:
        argv = SERVE
        if os.geteuid() == 0 and self.prelude:
            script = f'set -e\n{self.prelude}\nexec "$@"'
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
            argv += SERVE
        self.launch(argv)
        return self
