"""Timeouts, interrupts, restarts, crashes, ordering, parallelism, reaping, limits, shutdown."""

from __future__ import annotations

import concurrent.futures
import http.client
import signal
import socket
import time

import httpx
import pytest

from cellbox import procfs
from tests.conftest import STARTED, Client, Server
from tests.openapi_check import assert_documented


def _later(fn, *args, delay: float = 0.0, **kwargs):
    pool = concurrent.futures.ThreadPoolExecutor(1)

    def call():
        time.sleep(delay)
        return fn(*args, **kwargs)

    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def test_timeout_interrupts_and_keeps_state(client: Client, ctx: str):
    client.run("kept = 42", context_id=ctx)
    started = time.monotonic()
    body = client.run("import time\nprint('start')\ntime.sleep(30)", context_id=ctx, timeout_ms=500)
    assert time.monotonic() - started < 5
    assert body["error"]["name"] == "TimeoutError"
    assert body["logs"]["stdout"] == ["start"]
    after = client.run("kept", context_id=ctx)
    assert after["items"][0]["text"] == "42"
    assert after["execution_count"] == 3


def test_stubborn_code_is_killed_and_the_context_restarts(client: Client, ctx: str):
    client.run("kept = 1", context_id=ctx)
    code = "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass"
    started = time.monotonic()
    body = client.run(code, context_id=ctx, timeout_ms=300)
    assert time.monotonic() - started < 10
    assert body["error"]["name"] == "TimeoutError"
    assert "state was lost" in body["error"]["value"]
    after = client.run("'kept' in globals()", context_id=ctx)
    assert after["items"][0]["text"] == "False"
    assert after["execution_count"] == 1


def test_interrupt_stops_the_running_code_and_keeps_state(client: Client, ctx: str):
    client.run("kept = 'yes'", context_id=ctx)
    running = _later(client.run, STARTED["python"] + "import time\ntime.sleep(60)", context_id=ctx)
    client.wait_started(ctx)
    response = client.post(f"/contexts/{ctx}/interrupt")
    assert response.status_code == 200
    body = running.result(timeout=10)
    assert body["error"]["name"] == "KeyboardInterrupt"
    assert client.run("kept", context_id=ctx)["items"][0]["text"] == "'yes'"


def test_interrupt_when_idle_does_nothing(client: Client, ctx: str):
    client.run("v = 3", context_id=ctx)
    assert client.post(f"/contexts/{ctx}/interrupt").status_code == 200
    time.sleep(0.2)
    body = client.run("v", context_id=ctx)
    assert body["error"] is None
    assert body["items"][0]["text"] == "3"


def test_restart_clears_state_and_counter(client: Client, ctx: str):
    client.run("gone = 1", context_id=ctx)
    client.run("gone", context_id=ctx)
    assert client.post(f"/contexts/{ctx}/restart").status_code == 200
    body = client.run("'gone' in globals()", context_id=ctx)
    assert body["items"][0]["text"] == "False"
    assert body["execution_count"] == 1


def test_restart_while_running(client: Client, ctx: str):
    running = _later(client.run, STARTED["python"] + "import time\ntime.sleep(60)", context_id=ctx)
    client.wait_started(ctx)
    queued = _later(client.run, "'queued ran'", context_id=ctx)
    time.sleep(0.3)  # queued meanwhile (if not yet, it comes after the restart: the same answer)
    assert client.post(f"/contexts/{ctx}/restart").status_code == 200
    assert running.result(timeout=10)["error"]["name"] == "ContextRestarted"
    after = queued.result(timeout=30)
    assert after["items"][0]["text"] == "'queued ran'"
    assert after["execution_count"] == 1


def test_delete_while_running(client: Client):
    ctx = client.context()
    running = _later(client.run, STARTED["python"] + "import time\ntime.sleep(60)", context_id=ctx)
    client.wait_started(ctx)
    queued = _later(client.post, "/execute", json={"code": "1", "context_id": ctx})
    time.sleep(0.3)  # queued meanwhile (if not yet, it comes after the delete: the same answer)
    assert client.delete(f"/contexts/{ctx}").status_code == 204
    assert running.result(timeout=10)["error"]["name"] == "ContextDeleted"
    assert queued.result(timeout=10).status_code == 404


@pytest.mark.parametrize(
    "code,words",
    [
        ("import os; os._exit(7)", "code 7"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "SIGSEGV"),
        ("import ctypes; ctypes.string_at(0)", "SIGSEGV"),
    ],
)
def test_crash_is_reported_and_the_next_execution_gets_a_fresh_process(
    client: Client, ctx: str, code: str, words: str
):
    client.run("kept = 1", context_id=ctx)
    started = time.monotonic()
    body = client.run(code, context_id=ctx)
    assert time.monotonic() - started < 10
    assert body["error"]["name"] == "ContextDied"
    assert words in body["error"]["value"]
    after = client.run("'kept' in globals()", context_id=ctx)
    assert after["error"] is None
    assert after["items"][0]["text"] == "False"
    assert after["execution_count"] == 1


def test_fifo_per_context(client: Client, ctx: str):
    client.run("order = []", context_id=ctx)
    futures = []
    for i in range(6):
        futures.append(
            _later(client.run, f"import time; time.sleep(0.05); order.append({i})", context_id=ctx)
        )
        time.sleep(0.03)
    for future in futures:
        future.result(timeout=30)
    assert client.run("order", context_id=ctx)["items"][0]["text"] == "[0, 1, 2, 3, 4, 5]"


def test_contexts_run_in_parallel(server: Server):
    with server.client() as c:
        ids = [c.context() for _ in range(3)]
        started = time.monotonic()
        futures = [
            _later(server.client().run, "import time; time.sleep(1.5)", context_id=i) for i in ids
        ]
        for future in futures:
            assert future.result(timeout=30)["error"] is None
        assert time.monotonic() - started < 4
        for i in ids:
            c.delete(f"/contexts/{i}")


def test_other_contexts_keep_state_when_one_crashes(client: Client):
    a, b = client.context(), client.context()
    client.run("mine = 'a'", context_id=a)
    client.run("import os; os._exit(1)", context_id=b)
    assert client.run("mine", context_id=a)["items"][0]["text"] == "'a'"
    for i in (a, b):
        client.delete(f"/contexts/{i}")


def test_client_disconnect_does_not_lock_the_context(server: Server, client: Client, ctx: str):
    client.run("kept = 5", context_id=ctx)
    with httpx.Client(base_url=server.url, headers={"Authorization": server.token}) as short:
        with pytest.raises(httpx.ReadTimeout):
            short.post(
                "/execute",
                json={"code": "import time\ntime.sleep(60)", "context_id": ctx},
                timeout=0.5,
            )
    started = time.monotonic()
    body = client.run("kept", context_id=ctx)
    assert time.monotonic() - started < 5
    assert body["items"][0]["text"] == "5"


def test_idle_contexts_are_reaped():
    srv = Server(idle_timeout_s=1, pool_python=0, pool_typescript=0).start()
    try:
        with srv.client() as c:
            ctx = c.context()
            time.sleep(3)
            assert c.get(f"/contexts/{ctx}").status_code == 404
    finally:
        srv.stop()
        srv.cleanup()


def test_max_contexts_gives_429():
    srv = Server(max_contexts=2, pool_python=0, pool_typescript=0).start()
    try:
        with srv.client() as c:
            c.context()
            c.run("1")
            response = c.post("/contexts", json={})
            assert response.status_code == 429
            assert "message" in response.json()
            implicit = c.post("/execute", json={"code": "1"})  # would create a context
            assert implicit.status_code == 429
            doc = c.get("/openapi.json").json()
            assert_documented(doc, "POST", "/contexts", response)
            assert_documented(doc, "POST", "/execute", implicit)
    finally:
        srv.stop()
        srv.cleanup()


def _healthz(sock: socket.socket) -> int:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: cellbox\r\n\r\n")
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


def test_idle_connections_are_kept_for_the_keep_alive_then_closed():
    srv = Server(keep_alive_s=1.5, pool_python=0, pool_typescript=0).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            assert _healthz(sock) == 200
            time.sleep(0.5)
            assert _healthz(sock) == 200  # the same connection, still open
            time.sleep(2.5)
            sock.settimeout(0.5)
            assert sock.recv(1) == b""  # closed by the server a while ago
    finally:
        srv.stop()
        srv.cleanup()


def _descendants(pid: int) -> set[int]:
    return set(procfs.descendants([pid]))


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def test_shutdown_leaves_no_process_behind():
    srv = Server(pool_python=1, pool_typescript=0).start()
    try:
        with srv.client() as c:
            ctx = c.context()
            c.run(
                "import subprocess\nsubprocess.Popen(['sleep', '300'], start_new_session=True)",
                context_id=ctx,
            )
            _later(c.run, "import time; time.sleep(300)", context_id=ctx)
            time.sleep(0.5)
            assert srv.process is not None
            tree = _descendants(srv.process.pid)
            assert tree
            srv.stop(signal.SIGINT)
        deadline = time.monotonic() + 10
        while _alive(tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(tree)
    finally:
        srv.cleanup()


def test_without_a_token_the_first_start_makes_one_and_later_starts_read_it():
    server = Server(pool_python=0, pool_typescript=0)
    del server.env["CELLBOX_API_KEY"]
    token_file = server.state_dir / "api-token"
    try:
        said = []
        for _ in range(2):
            server.start()
            server.stop()
            said.append(server.read_log())
        token = token_file.read_text().strip()
        assert token and token_file.stat().st_mode & 0o777 == 0o600
        assert f"API token generated and stored in {token_file} (mode 0600)" in said[0], said[0]
        assert f"API token read from {token_file}" in said[1], said[1]
        assert said[0].count(token) == said[1].count(token) == 1
    finally:
        server.cleanup()
