"""9. Degraded hosts say so. ``GET /info`` reports the isolation achieved (uid mode,
namespaces, memory/pids enforcement, network) and it is the truth: checked here on the full
host, on a server with the sandbox switched off, and (as root) on servers started in a mount
namespace of this test's making where bubblewrap or the cgroup hierarchies do not exist."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import Server
from tests.security.conftest import (
    SMALL_LIMITS,
    HostServer,
    Listener,
    isolation,
    namespace,
    py_value,
    worker_host_pid,
)

ROOT = os.geteuid() == 0
BANNER = "CELLBOX SANDBOX IS DEGRADED"
CHEAP = {**SMALL_LIMITS, "pool_python": 1, "pool_typescript": 0}


def test_full_isolation_is_reported_as_such(limited: Server, offline: Server):
    for server, network in ((limited, "public"), (offline, "off")):
        info = isolation(server)
        assert info["level"] == "full"
        assert info["enabled"] is True
        assert info["uid_mode"] == "dedicated" and info["uid"] != 0 and info["gid"] != 0
        assert set(info["namespaces"]) >= {"user", "pid", "ipc", "uts", "mount", "cgroup"}
        assert "net" in info["namespaces"]
        assert info["memory_limit"].startswith("cgroup-v")
        assert info["pids_limit"].startswith("cgroup-v")
        assert info["network"] == network
        assert info["warnings"] == []
        assert BANNER not in server.read_log()


def _start(server: Server) -> Server:
    try:
        return server.start()
    except Exception:
        server.cleanup()
        raise


@pytest.fixture
def degraded() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()
        server.cleanup()


def _contexts_pid_namespace(server: Server) -> tuple[int, str]:
    with server.client() as client:
        context_id = client.context("python")
        worker = worker_host_pid(client, context_id)
        return worker, namespace(worker, "pid")


def _memory_bomb_error(server: Server) -> str:
    with server.client() as client:
        body = client.run("hog = b'x' * (512 << 20)", timeout_ms=30000)
    assert body["error"] is not None, body
    return f"{body['error']['name']}: {body['error']['value']}"


def _degraded_common(server: Server) -> dict:
    info = isolation(server)
    assert info["level"] == "degraded"
    assert info["warnings"], info
    assert BANNER in server.read_log()  # the loud warning
    with server.client() as client:
        ids = py_value(client, "import os\n[*os.getresuid(), *os.getresgid()]")
    if ROOT:
        assert info["uid_mode"] == "dedicated"
        assert 0 not in ids and ids[0] == info["uid"]
    return info


def test_sandbox_off_reports_no_namespaces_and_it_is_true(degraded: list[Server]):
    server = _start(Server(sandbox="off", **CHEAP))
    degraded.append(server)
    info = _degraded_common(server)
    assert info["enabled"] is False
    assert info["namespaces"] == []
    assert info["memory_limit"] == "rlimit-data"
    assert info["network"] == "host"  # the default public cannot be had: said loudly
    with server.client() as client:
        network = client.get("/info").json()["network"]
    assert network["mode"] == "host" and network["warnings"], network
    worker, pid_ns = _contexts_pid_namespace(server)
    assert pid_ns == namespace(server.process.pid, "pid")  # truly no pid namespace
    assert "MemoryError" in _memory_bomb_error(server)  # RLIMIT_DATA still holds


def test_host_without_bubblewrap(degraded: list[Server]):
    """bwrap unusable (covered by /dev/null in the server's mount namespace)."""
    server = _start(HostServer("mount --bind /dev/null /usr/bin/bwrap", network="off", **CHEAP))
    degraded.append(server)
    info = _degraded_common(server)
    if ROOT:
        assert any("bwrap" in w or "bubblewrap" in w for w in info["warnings"]), info
        assert info["mode"] != "bubblewrap"
        assert info["namespaces"] == []
        # asked for --network off, but it cannot be switched off without bubblewrap: say so
        assert info["network"] == "host"
        assert any("network" in w for w in info["warnings"]), info
        assert info["memory_limit"].startswith("cgroup-v")  # cgroups still work
        worker, pid_ns = _contexts_pid_namespace(server)
        assert pid_ns == namespace(server.process.pid, "pid")
        assert namespace(worker, "net") == namespace(server.process.pid, "net")
        listener = Listener()
        try:
            with server.client() as client:
                code = (
                    "import socket\n"
                    f"socket.create_connection(('127.0.0.1', {listener.port}), timeout=3)"
                    ".recv(100)"
                )
                body = client.run(code, timeout_ms=10000)
            # the report said "host": and indeed the network is the host's
            assert body["error"] is None, body
            assert listener.accepted == 1
        finally:
            listener.close()
        assert "out of memory" in _memory_bomb_error(server)


def test_host_without_cgroups(degraded: list[Server]):
    """No cgroup hierarchy mounted in the server's mount namespace."""
    server = _start(HostServer("umount -l /sys/fs/cgroup", **CHEAP))
    degraded.append(server)
    info = _degraded_common(server)
    if ROOT:
        assert any("cgroup" in w for w in info["warnings"]), info
        assert info["memory_limit"] == "rlimit-data"
        assert info["pids_limit"] == "rlimit-nproc-per-uid"
        assert "pid" in info["namespaces"]  # bubblewrap still works
        worker, pid_ns = _contexts_pid_namespace(server)
        assert pid_ns != namespace(server.process.pid, "pid")
        assert "MemoryError" in _memory_bomb_error(server)  # the RLIMIT_DATA fallback holds
