"""A context whose process dies while idle never loses its state silently: the next
execution answers ContextDied (saying why, and that it did not run), then the context runs
on a fresh process counting from 1."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import Client, Server
from tests.reliability.conftest import kill, wait_until, worker_host_pid

NOT_RUN = "this code was NOT run"


def _assert_died(client: Client, context_id: str, cause: str, code: str = "x") -> None:
    body = client.run(code, context_id=context_id)
    assert body["error"] is not None, body
    assert body["error"]["name"] == "ContextDied", body
    value = body["error"]["value"]
    assert cause in value and NOT_RUN in value and "state" in value, value
    assert body["items"] == [] and body["logs"] == {"stdout": [], "stderr": []}


def _assert_fresh(client: Client, context_id: str, gone: str = "x") -> None:
    body = client.run(f"'{gone}' in globals()", context_id=context_id)
    assert body["error"] is None, body
    assert body["items"][0]["text"] == "False"
    assert body["execution_count"] == 1


def _log_says(server: Server, *words: str) -> bool:
    return any(all(w in line for w in words) for line in server.read_log().splitlines())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_from_outside(server: Server, client: Client, sig: signal.Signals):
    ctx = client.context()
    client.run("x = 1", context_id=ctx)
    client.run("x += 1", context_id=ctx)
    kill(worker_host_pid(client, ctx), sig)
    # the death is noticed when it happens (logged with the context), not at the next call
    assert wait_until(lambda: _log_says(server, ctx, f"killed by {sig.name}"), timeout=10)
    _assert_died(client, ctx, f"killed by {sig.name}")
    _assert_fresh(client, ctx)
    client.delete(f"/contexts/{ctx}")


def test_exit_from_a_background_thread(server: Server, client: Client):
    ctx = client.context()
    code = "x = 1\nimport os, threading\nthreading.Timer(0.2, os._exit, (3,)).start()"
    assert client.run(code, context_id=ctx)["error"] is None
    assert wait_until(lambda: _log_says(server, ctx, "exited with code 3"), timeout=10)
    _assert_died(client, ctx, "exited with code 3")
    _assert_fresh(client, ctx)
    client.delete(f"/contexts/{ctx}")


def test_out_of_memory_in_a_background_thread(server: Server, client: Client):
    ctx = client.context()
    code = (
        "x = 1\nimport threading, time\nhog = []\n"
        "def grow():\n    time.sleep(0.2)\n    while True:\n        hog.append(b'x' * (8 << 20))\n"
        "threading.Thread(target=grow, daemon=True).start()"
    )
    assert client.run(code, context_id=ctx)["error"] is None
    assert wait_until(lambda: _log_says(server, ctx, "out of memory"), timeout=30)
    _assert_died(client, ctx, "out of memory")
    _assert_fresh(client, ctx)
    client.delete(f"/contexts/{ctx}")


def test_sse_gives_an_error_event_then_exit_1(server: Server, client: Client):
    ctx = client.context()
    client.run("x = 1", context_id=ctx)
    kill(worker_host_pid(client, ctx))
    assert wait_until(lambda: _log_says(server, ctx, "killed by SIGKILL"), timeout=10)
    events = client.events("x", context_id=ctx)
    assert [e["type"] for e in events] == ["error", "exit"], events
    assert events[0]["name"] == "ContextDied" and NOT_RUN in events[0]["value"]
    assert events[1]["code"] == 1
    assert client.events("1", context_id=ctx)[-1]["execution_count"] == 1
    client.delete(f"/contexts/{ctx}")


def test_typescript_worker_killed_while_idle(server: Server, client: Client):
    ctx = client.context("typescript")
    client.run("let x = 1;", context_id=ctx)
    kill(worker_host_pid(client, ctx))
    assert wait_until(lambda: _log_says(server, ctx, "killed by SIGKILL"), timeout=10)
    _assert_died(client, ctx, "killed by SIGKILL")
    body = client.run("typeof x", context_id=ctx)
    assert body["items"][0]["text"] == "'undefined'" and body["execution_count"] == 1
    client.delete(f"/contexts/{ctx}")


def test_a_death_during_an_execution_is_told_by_that_execution(client: Client):
    ctx = client.context()
    client.run("x = 1", context_id=ctx)
    body = client.run("import os; os._exit(5)", context_id=ctx)
    assert body["error"]["name"] == "ContextDied" and NOT_RUN not in body["error"]["value"]
    _assert_fresh(client, ctx)  # told once: the next execution just runs
    client.delete(f"/contexts/{ctx}")


def _left_before_its_death(client: Client, dies_after_s: float) -> str:
    """A context whose code (deaf to interrupts) exits with code 3 ``dies_after_s`` after it
    started; its stream's client goes away as soon as the code has started."""
    ctx = client.context()
    client.run("x = 1", context_id=ctx)
    code = (
        "import os, signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"print('started', flush=True)\ntime.sleep({dies_after_s})\nos._exit(3)"
    )
    with client.stream_events(code, context_id=ctx) as events:
        assert next(events)["type"] == "stdout"  # then the client goes away
    return ctx


def test_a_death_told_to_a_client_that_left_is_told_to_the_next(server: Server, client: Client):
    ctx = _left_before_its_death(client, 0.5)
    assert wait_until(lambda: _log_says(server, ctx, "exited with code 3"), timeout=10)
    _assert_died(client, ctx, "exited with code 3 while it ran code for a client that had gone")
    _assert_fresh(client, ctx)
    client.delete(f"/contexts/{ctx}")


def test_a_client_that_left_just_before_the_death_is_not_taken_for_told(
    server: Server, client: Client
):
    # The death may come before the server watches for a disconnect (that starts after
    # 50 ms): the stream's end says ContextDied to nobody, so the next execution must say
    # it. That one is sent at once: it must not run before the server knows whether the
    # client heard. (SIGINT is ignored: when the server sees the client leave first, its
    # interrupt must not stop the death either.)
    ctx = _left_before_its_death(client, 0.02)
    _assert_died(client, ctx, "exited with code 3 while it ran code for a client that had gone")
    _assert_fresh(client, ctx)
    client.delete(f"/contexts/{ctx}")


def test_a_client_that_left_after_a_timeout_is_not_told_of_the_kill(client: Client):
    # The timeout comes first, then the client leaves, then the code that ignores its
    # interrupt is killed: the loss is told to nobody, so the next execution must say it.
    ctx = client.context()
    client.run("x = 1", context_id=ctx)
    code = (
        "import time\nprint('started', flush=True)\nwhile True:\n    try:\n"
        "        time.sleep(10)\n    except KeyboardInterrupt:\n"
        "        print('interrupted', flush=True)"
    )
    with client.stream_events(code, context_id=ctx, timeout_ms=300) as events:
        assert [next(events)["data"] for _ in range(2)] == ["started", "interrupted"]
    _assert_died(client, ctx, "ignored its interrupt while it ran code for a client that had gone")
    _assert_fresh(client, ctx)
    client.delete(f"/contexts/{ctx}")
