"""The zygote is only a forker: killing it kills no context. They keep their state, their
cgroups (limits, total cleanup) and their exit notification; a new zygote starts at once."""

from __future__ import annotations

import time

from tests.conftest import Client, Server
from tests.reliability.conftest import kill, wait_until, worker_host_pid, zygote_pid
from tests.security.conftest import cgroup_dirs, pids_with_marker, unit_pids


def _limit(worker: int, controller: str, name: str) -> int:
    for directory in cgroup_dirs(worker):
        if directory.parts[4] == controller and (directory / name).exists():
            return int((directory / name).read_text())
    raise AssertionError(f"no {controller} cgroup for {worker}")


def test_contexts_outlive_the_zygote(server: Server, client: Client):
    contexts = [client.context() for _ in range(3)]
    for n, ctx in enumerate(contexts):
        client.run(f"kept = {n}", context_id=ctx)
    marker = "4242" + str(time.monotonic_ns())[-6:]
    client.run(
        f"import subprocess; subprocess.Popen(['sleep', '{marker}'], start_new_session=True)",
        context_id=contexts[0],
    )
    workers = [worker_host_pid(client, ctx) for ctx in contexts]
    counts = [client.run("1", context_id=ctx)["execution_count"] for ctx in contexts]
    old = zygote_pid(server)
    kill(old)

    # a new zygote comes up by itself, and the log says what happened
    assert wait_until(lambda: zygote_pid(server) != old, timeout=30)
    assert "zygote" in server.read_log() and "live on" in server.read_log()

    # every context kept its process, its state and its counter
    for n, ctx in enumerate(contexts):
        body = client.run("kept", context_id=ctx)
        assert body["error"] is None, body
        assert body["items"][0]["text"] == str(n)
        assert body["execution_count"] == counts[n] + 1
    assert [worker_host_pid(client, ctx) for ctx in contexts] == workers

    # limits still hold: the cgroups are still theirs
    assert _limit(workers[1], "memory", "memory.limit_in_bytes") == 256 << 20
    body = client.run(
        "hog = []\nwhile True:\n    hog.append(b'x' * (8 << 20))", context_id=contexts[1]
    )
    assert body["error"]["name"] == "ContextDied" and "out of memory" in body["error"]["value"]

    # a death is still noticed and told
    kill(workers[2])
    body = client.run("kept", context_id=contexts[2])
    assert body["error"]["name"] == "ContextDied", body

    # delete still kills the whole tree, detached offspring included
    tree = unit_pids(workers[0])
    assert pids_with_marker(marker)
    assert client.delete(f"/contexts/{contexts[0]}").status_code == 204
    assert wait_until(lambda: not pids_with_marker(marker), timeout=10)
    assert wait_until(lambda: not [p for p in tree if _alive(p)], timeout=10)

    # new contexts keep coming, forked by the new zygote
    started = time.monotonic()
    fresh = [client.context() for _ in range(4)]
    assert time.monotonic() - started < 10
    for ctx in fresh:
        assert client.run("6 * 7", context_id=ctx)["items"][0]["text"] == "42"
    for ctx in [*contexts[1:], *fresh]:
        client.delete(f"/contexts/{ctx}")


def _alive(pid: int) -> bool:
    from tests.security.conftest import alive

    return alive(pid)
