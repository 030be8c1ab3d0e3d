"""SIGTERM drains: new work gets 503, accepted executions finish within the grace period or
are stopped with a well-formed answer, and nothing is left. SIGKILL leaves nothing running,
and the next server on the same state directory cleans what is on disk."""

from __future__ import annotations

import concurrent.futures
import hashlib
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import STARTED, Server
from tests.reliability.conftest import descendants, kill, wait_until, zygote_pid
from tests.security.conftest import SMALL_LIMITS, alive, pids_with_marker, start_server

STUBBORN = "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass"
DRAINING = "new executions are refused"  # the server's log line once the signal is handled


def _leftovers(server: Server, tree: list[int], marker: str) -> list[str]:
    """What of the server is still on the host: processes, cgroups, mounts, work dirs."""
    found = [f"process {pid}" for pid in tree if alive(pid)]
    found += [f"process {pid} (marked)" for pid in pids_with_marker(marker)]
    instance = hashlib.sha256(str(server.state_dir).encode()).hexdigest()[:12]
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if (hierarchy / "cellbox" / instance).exists():
            found.append(f"cgroup {hierarchy / 'cellbox' / instance}")
    with open("/proc/self/mountinfo") as mounts:
        found += [f"mount {line.split()[4]}" for line in mounts if str(server.state_dir) in line]
    contexts = server.state_dir / "contexts"
    if contexts.exists():
        found += [f"work directory {entry}" for entry in contexts.iterdir()]
    return found


def _spawn_detached(client, ctx: str, marker: str) -> None:
    code = f"import subprocess; subprocess.Popen(['sleep', '{marker}'], start_new_session=True)"
    assert client.run(code, context_id=ctx)["error"] is None
    assert wait_until(lambda: pids_with_marker(marker), timeout=10)


def test_sigterm_drains_then_leaves_nothing():
    srv = start_server(**SMALL_LIMITS, shutdown_grace_s=3)
    marker = "4243" + str(time.monotonic_ns())[-6:]
    pool = concurrent.futures.ThreadPoolExecutor(8)
    try:
        with srv.client() as client:
            quick, slow, stubborn, ts = (client.context() for _ in range(3)), None, None, None
            quick, slow, stubborn = list(quick)
            ts = client.context("typescript")
            _spawn_detached(client, slow, marker)
            client.run("kept = 1", context_id=quick)

            def run(code: str, ctx: str, **fields):
                with srv.client() as own:
                    return own.post("/execute", json={"code": code, "context_id": ctx, **fields})

            def stream(code: str, ctx: str):
                with srv.client() as own:
                    body = {"code": code, "context_id": ctx}
                    with own.stream("POST", "/execute/async", json=body) as response:
                        return response.status_code, response.read()

            mark, ts_mark = STARTED["python"], STARTED["typescript"]
            finishing = pool.submit(run, "import time; time.sleep(1.5); 'finished'", quick)
            interrupted = pool.submit(run, mark + "import time; time.sleep(60)", slow)
            killed = pool.submit(run, mark + STUBBORN, stubborn)
            ts_run = pool.submit(run, ts_mark + "await new Promise(r => setTimeout(r, 60000))", ts)
            for ctx in (slow, stubborn, ts):  # all running before the signal
                client.wait_started(ctx)
            streamed = pool.submit(stream, "import time; print('a'); time.sleep(60)", slow)
            time.sleep(0.5)  # accepted: queued behind the slow one
            assert srv.process is not None
            tree = descendants(srv.process.pid)
            srv.process.send_signal(signal.SIGTERM)
            assert wait_until(lambda: DRAINING in srv.read_log(), timeout=10)

            # new work is refused while the accepted executions drain
            assert (
                client.post("/execute", json={"code": "1", "context_id": quick}).status_code == 503
            )
            response = client.post("/contexts", json={})
            assert response.status_code == 503 and "shutting down" in response.json()["message"]

            body = finishing.result(timeout=30).json()
            assert body["error"] is None and body["items"][0]["text"] == "'finished'"
            for future in (interrupted, killed, ts_run):
                response = future.result(timeout=30)
                assert response.status_code == 200, response.text
                assert response.json()["error"]["name"] == "ServerShutdown", response.text
            assert "state was lost" in killed.result().json()["error"]["value"]
        # the stream queued behind the interrupted one never started: a plain 503
        status, text = streamed.result(timeout=30)
        assert status == 503 and b"shutting down" in text, (status, text)
        assert srv.process.wait(timeout=30) is not None
        assert wait_until(lambda: not _leftovers(srv, tree, marker), timeout=10), _leftovers(
            srv, tree, marker
        )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        srv.stop()
        srv.cleanup()


def test_sigkill_leaves_nothing_running_and_the_next_start_cleans_up():
    srv = start_server(**SMALL_LIMITS)
    marker = "4244" + str(time.monotonic_ns())[-6:]
    successor = None
    try:
        with srv.client() as client:
            orphaned = client.context()  # forked by a zygote that then dies
            kill(zygote_pid(srv))
            contexts = [orphaned, client.context(), client.context("typescript")]
            for ctx in contexts[:2]:
                _spawn_detached(client, ctx, f"{marker}{len(pids_with_marker(marker))}")
        assert srv.process is not None
        tree = descendants(srv.process.pid)
        workdirs = list((srv.state_dir / "contexts").iterdir())
        assert len(workdirs) >= 3
        srv.stop(signal.SIGKILL)
        gone = wait_until(lambda: not [p for p in tree if alive(p)], timeout=10)
        assert gone, [p for p in tree if alive(p)]
        assert not pids_with_marker(marker)

        # what is left is on disk only; the next server on this state directory removes it
        successor = Server(**SMALL_LIMITS)
        successor.cleanup()
        successor.state_dir = srv.state_dir
        successor.env["CELLBOX_STATE_DIR"] = str(srv.state_dir)
        successor.start()
        assert not [w for w in workdirs if w.exists()]
        with successor.client() as client:
            assert client.run("1 + 1")["items"][0]["text"] == "2"
    finally:
        if successor is not None:
            successor.stop()
        srv.cleanup()


def test_a_second_signal_cuts_the_grace_short():
    srv = start_server(**SMALL_LIMITS, shutdown_grace_s=60)
    try:
        with srv.client() as client:
            ctx = client.context()
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                code = {
                    "code": STARTED["python"] + "import time; time.sleep(60)",
                    "context_id": ctx,
                }
                running = pool.submit(lambda: srv.client().post("/execute", json=code))
                client.wait_started(ctx)
                assert srv.process is not None
                srv.process.send_signal(signal.SIGTERM)
                assert wait_until(lambda: DRAINING in srv.read_log(), timeout=10)
                started = time.monotonic()
                srv.process.send_signal(signal.SIGINT)
                response = running.result(timeout=30)
                assert response.status_code == 200, response.text
                assert response.json()["error"]["name"] == "ServerShutdown"
                srv.process.wait(timeout=30)
                assert time.monotonic() - started < 15
    finally:
        srv.stop()
        srv.cleanup()


def test_a_second_server_on_a_state_directory_in_use_refuses_to_start():
    srv = start_server(**SMALL_LIMITS)
    second = Server(**SMALL_LIMITS)
    second.cleanup()
    second.state_dir = srv.state_dir
    second.env["CELLBOX_STATE_DIR"] = str(srv.state_dir)
    try:
        with srv.client() as client:
            ctx = client.context()
            client.run("kept = 41", context_id=ctx)
            with pytest.raises(RuntimeError, match="server exited with code 1"):
                second.start()
            said = second.read_log()
            assert f"another cellbox server (pid {srv.pid}) is using the state directory" in said
            assert "Traceback" not in said, said
            # the first server lost nothing: its context, its volume, new contexts
            assert client.run("kept + 1", context_id=ctx)["items"][0]["text"] == "42"
            assert client.run("1 + 1")["items"][0]["text"] == "2"
            assert srv.process is not None and srv.process.poll() is None
    finally:
        srv.stop()
        srv.cleanup()
