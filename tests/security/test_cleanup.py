"""6. Cleanup is total: DELETE, restart, timeout-kill and server shutdown (and a server killed
outright: --die-with-parent) leave no process of the context alive, detached ones included."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Client, Server
from tests.security.conftest import (
    SMALL_LIMITS,
    Contexts,
    alive,
    cgroup_dirs,
    pids_with_marker,
    run_ok,
    skip_unless_full,
    start_server,
    wait_until,
    worker_host_pid,
)

LANGUAGES = ["python", "typescript"]

PY_SPAWN = """
import subprocess, sys
subprocess.Popen(['sleep', '{m}.1'])                              # a plain child
subprocess.Popen(['sleep', '{m}.2'], start_new_session=True)      # setsid
subprocess.Popen(['sh', '-c', 'trap "" HUP INT TERM; exec sleep {m}.3'],
                 start_new_session=True)                         # ignores polite signals
subprocess.Popen(['sh', '-c', 'setsid sh -c "sleep {m}.4 &" &'])  # double fork via a shell
# a classic daemon: fork, setsid, fork again, the middle one exits (done by a fresh
# interpreter: forking the multi-threaded worker itself is unsafe)
DAEMON = (
    "import os\\n"
    "if os.fork() == 0:\\n"
    "    os.setsid()\\n"
    "    if os.fork() == 0:\\n"
    "        os.execvp('sleep', ['sleep', '{m}.5'])\\n"
    "    os._exit(0)\\n"
    "os.wait()\\n"
)
subprocess.run([sys.executable, '-c', DAEMON], check=True)
"""

TS_SPAWN = """
const cp = require('node:child_process');
cp.spawn('sleep', ['{m}.1']);
cp.spawn('sleep', ['{m}.2'], {{ detached: true, stdio: 'ignore' }}).unref();
cp.spawn('sh', ['-c', 'trap "" HUP INT TERM; exec sleep {m}.3'], {{ detached: true }}).unref();
cp.spawn('sh', ['-c', 'setsid sh -c "sleep {m}.4 &" &']);
cp.spawn('sh', ['-c', '(sleep {m}.5 &) &'], {{ detached: true }}).unref();
"""

EXPECTED = 5


def _marker() -> str:
    return f"4242{secrets.randbelow(10**6):06d}"


def _spawn(client: Client, context_id: str, language: str) -> str:
    """Start detached offspring in the context; the marker their command lines carry."""
    marker = _marker()
    code = (PY_SPAWN if language == "python" else TS_SPAWN).format(m=marker)
    run_ok(client, code, context_id=context_id)
    found = wait_until(lambda: len(pids_with_marker(marker)) >= EXPECTED, timeout=10)
    assert found, f"offspring did not start: {pids_with_marker(marker)}"
    return marker


def _gone(marker: str, also: list[int] = ()) -> None:
    def clean() -> bool:
        return not pids_with_marker(marker) and not [pid for pid in also if alive(pid)]

    assert wait_until(clean, timeout=10), (
        f"survivors: {pids_with_marker(marker)} {[pid for pid in also if alive(pid)]}"
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_delete_kills_everything(api: Client, contexts: Contexts, language: str):
    context_id = contexts.new(language)
    marker = _spawn(api, context_id, language)
    worker = worker_host_pid(api, context_id)
    cgroups = cgroup_dirs(worker)
    assert cgroups
    response = api.delete(f"/contexts/{context_id}")
    assert response.status_code == 204
    _gone(marker, [worker])
    assert wait_until(lambda: not [d for d in cgroups if d.exists()], timeout=5), cgroups
    assert api.get(f"/contexts/{context_id}").status_code == 404


@pytest.mark.parametrize("language", LANGUAGES)
def test_restart_kills_everything(api: Client, contexts: Contexts, language: str):
    context_id = contexts.new(language)
    marker = _spawn(api, context_id, language)
    worker = worker_host_pid(api, context_id)
    response = api.post(f"/contexts/{context_id}/restart")
    assert response.status_code == 200, response.text
    _gone(marker, [worker])
    body = run_ok(api, "1 + 1", context_id=context_id)
    assert body["execution_count"] == 1


STUBBORN = {
    "python": (
        "import time\nwhile True:\n    try:\n        time.sleep(10)\n"
        "    except KeyboardInterrupt:\n        pass"
    ),
    # blocks in native code, where V8 cannot terminate it, on a child that ignores the
    # SIGINT an interrupt sends to the children of the execution
    "typescript": "require('node:child_process').execSync(\"trap '' INT; sleep 4242.777\")",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_timeout_kill_kills_everything(api: Client, contexts: Contexts, language: str):
    context_id = contexts.new(language)
    marker = _spawn(api, context_id, language)
    worker = worker_host_pid(api, context_id)
    body = api.run(STUBBORN[language], context_id=context_id, timeout_ms=300)
    assert body["error"]["name"] == "TimeoutError", body
    assert "state was lost" in body["error"]["value"], body
    _gone(marker, [worker])
    assert not pids_with_marker("4242.777")
    assert run_ok(api, "1 + 1", context_id=context_id)["execution_count"] == 1


@pytest.fixture
def own_server() -> Iterator[Server]:
    server = start_server(**SMALL_LIMITS)
    try:
        skip_unless_full(server)
        yield server
    finally:
        server.stop()
        server.cleanup()


def _populate(server: Server) -> tuple[list[str], list[int], list[Path]]:
    markers, workers, cgroups = [], [], []
    with server.client() as client:
        for language in LANGUAGES:
            context_id = client.context(language)
            markers.append(_spawn(client, context_id, language))
            workers.append(worker_host_pid(client, context_id))
            cgroups += cgroup_dirs(workers[-1])
    return markers, workers, cgroups


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_server_shutdown_kills_everything(own_server: Server, sig: signal.Signals):
    markers, workers, cgroups = _populate(own_server)
    own_server.stop(sig)
    for marker in markers:
        _gone(marker, workers)
    assert not [d for d in cgroups if d.exists()], cgroups


def test_killed_server_takes_its_sandboxes_along(own_server: Server):
    """SIGKILL leaves the server no chance to clean up: --die-with-parent and the pid
    namespaces must; a new server on the same state directory removes the rest."""
    markers, workers, cgroups = _populate(own_server)
    own_server.stop(signal.SIGKILL)
    for marker in markers:
        _gone(marker, workers)
    # the next server on this state directory clears what is left (empty cgroups)
    successor = Server(**SMALL_LIMITS)
    successor.cleanup()
    successor.state_dir = own_server.state_dir
    successor.env["CELLBOX_STATE_DIR"] = str(own_server.state_dir)
    successor.start()
    try:
        assert wait_until(lambda: not [d for d in cgroups if d.exists()], timeout=5), cgroups
    finally:
        successor.stop()
