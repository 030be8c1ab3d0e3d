"""The blocking SDK against the real server: every call and every error type."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from cellbox.client import (
    Client,
    ConnectionFailed,
    ContextNotFound,
    Error,
    Exit,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    Result,
    Stdout,
    TooManyContexts,
    Unauthorized,
)
from cellbox.serve_process import free_port
from tests.conftest import STARTED, Server


def test_execute_returns_typed_results(sdk):
    execution = sdk.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)\n6 * 7")
    assert execution.text == "42" and execution.primary is not None
    assert execution.stdout == "out\n" and execution.stderr == "err\n"
    assert execution.error is None and execution.execution_count == 1
    sdk.contexts.delete(execution.context_id)


def test_execute_with_env_timeout_and_language(sdk):
    with sdk.contexts.create("typescript") as ctx:
        result = sdk.execute("process.env.MODE", context=ctx, env={"MODE": "test"})
        assert result.text == "'test'"
        slow = sdk.execute("while (true) {}", context=ctx.id, timeout=0.5)
        assert slow.error is not None and slow.error.name == "TimeoutError"
        assert ctx.execute("1 + 1").text == "2"


def test_code_errors_are_results_not_exceptions(sdk):
    with sdk.contexts.create() as ctx:
        execution = ctx.execute("def f():\n    raise ValueError('bad')\nf()")
    assert execution.error is not None and not execution.ok
    assert (execution.error.name, execution.error.value) == ("ValueError", "bad")
    assert "Traceback" in execution.error.traceback and "f()" in execution.error.traceback


def test_images_arrive_as_bytes(sdk):
    with sdk.contexts.create() as ctx:
        execution = ctx.execute("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2]);")
    (figure,) = execution.results
    assert figure.png is not None and figure.png.startswith(b"\x89PNG")
    assert figure.svg is not None and "<svg" in figure.svg


def test_stream_yields_events_as_they_happen(sdk):
    """The cell waits, after its first line, until the test has read that line from the
    stream and answered by uploading ``go``: only a stream read as it happens lets it go on
    (a buffered one would give ``first`` only after the cell had given up)."""
    code = (
        "import os, time\nprint('first', flush=True)\ngive_up = time.monotonic() + 20\n"
        "while not os.path.exists('go') and time.monotonic() < give_up:\n    time.sleep(0.01)\n"
        "print('second' if os.path.exists('go') else 'gave up')\n1/0"
    )
    events = []
    with sdk.contexts.create() as ctx, ctx.stream(code) as stream:
        for event in stream:
            events.append(event)
            if event == Stdout("first"):
                ctx.files.upload("go", b"")
    assert [type(event) for event in events] == [Stdout, Stdout, Error, Exit]
    assert events[:2] == [Stdout("first"), Stdout("second")]
    assert stream.execution is not None and stream.execution.logs.stdout == ["first", "second"]
    assert stream.execution.error is not None and stream.execution.error.name == "ZeroDivisionError"


def test_stream_in_a_context_and_result(sdk):
    with sdk.contexts.create() as ctx:
        ctx.execute("x = 2")
        events = list(ctx.stream("print(x)\nx * 10"))
        assert isinstance(events[1], Result) and events[1].item.text == "20"
        assert ctx.stream("x + 1").result().text == "3"


def test_contexts_create_list_get_restart_delete(sdk):
    ctx = sdk.contexts.create("python")
    assert ctx.id.startswith("ctx_") and ctx.language == "python" and ctx.cwd
    assert ctx.id in [c.id for c in sdk.contexts.list()]
    assert sdk.contexts.get(ctx.id).info == ctx.info
    ctx.execute("y = 1")
    assert ctx.restart() is ctx
    after = ctx.execute("y")
    assert after.error is not None and after.error.name == "NameError"
    assert after.execution_count == 1
    sdk.contexts.delete(ctx)
    with pytest.raises(ContextNotFound):
        sdk.contexts.get(ctx.id)
    with pytest.raises(ContextNotFound, match="not found"):
        ctx.execute("1")


def test_context_manager_deletes_even_on_error(sdk):
    with pytest.raises(RuntimeError), sdk.contexts.create() as ctx:
        raise RuntimeError("inside")
    with pytest.raises(ContextNotFound):
        sdk.contexts.get(ctx.id)
    with sdk.contexts.create() as gone:
        gone.delete()  # deleting it inside the block is fine too


def test_interrupt_stops_the_running_cell_and_keeps_state(server, sdk):
    with sdk.contexts.create() as ctx, server.client() as http:
        ctx.execute("kept = 5")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(ctx.execute, STARTED["python"] + "import time\ntime.sleep(30)")
            http.wait_started(ctx.id)
            ctx.interrupt()
            execution = running.result(timeout=30)
        assert execution.error is not None and execution.error.name == "KeyboardInterrupt"
        assert ctx.execute("kept").text == "5"


def test_invalid_request_names_the_fields(sdk):
    with pytest.raises(InvalidRequest) as caught:
        sdk.execute("1", timeout=0)
    assert caught.value.status == 400
    assert [e.field for e in caught.value.errors] == ["timeout_ms"]
    with pytest.raises(InvalidRequest) as caught:
        sdk.contexts.create("cobol")
    assert "language" in [e.field for e in caught.value.errors]
    with pytest.raises(InvalidRequest), sdk.stream("1", language="cobol") as stream:
        list(stream)


def test_unknown_context_raises_context_not_found(sdk):
    for call in (
        lambda: sdk.execute("1", context="ctx_missing"),
        lambda: list(sdk.stream("1", context="ctx_missing")),
        lambda: sdk.contexts.delete("ctx_missing"),
        lambda: sdk.contexts.restart("ctx_missing"),
        lambda: sdk.contexts.interrupt("ctx_missing"),
    ):
        with pytest.raises(ContextNotFound):
            call()


def test_wrong_token_raises_unauthorized(server):
    with Client(server.url, "wrong-token") as client:
        with pytest.raises(Unauthorized) as caught:
            client.contexts.list()
        assert caught.value.status == 401 and caught.value.message
        assert client.health()  # /healthz needs no token


def test_body_over_the_limit_raises_payload_too_large(sdk):
    with pytest.raises(PayloadTooLarge):
        sdk.execute("x = 1  # " + "a" * (11 << 20))


def test_context_limit_raises_too_many_contexts():
    server = Server(max_contexts=1, pool_python=0, pool_typescript=0).start()
    try:
        with Client(server.url, server.token) as client, client.contexts.create():
            with pytest.raises(TooManyContexts):
                client.contexts.create()
    finally:
        server.stop()
        server.cleanup()


def test_server_down_raises_connection_failed(misbehaving):
    url = misbehaving(b"")  # accepts, then hangs up without answering
    with Client(url, "t") as client, pytest.raises(ConnectionFailed):
        client.contexts.list()
    nobody = f"http://127.0.0.1:{free_port()}"
    with Client(nobody, "t") as client, pytest.raises(ConnectionFailed, match="is it running"):
        client.contexts.list()


def test_silent_server_raises_request_timeout(misbehaving):
    with Client(misbehaving(None), "t", timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            client.contexts.list()
        assert time.monotonic() - started < 5


def test_stream_cut_short_raises_connection_failed(misbehaving):
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    url = misbehaving(head + b'data: {"type": "stdout", "data": "partial"}\n\n')
    with Client(url, "t") as client:
        seen = []
        with pytest.raises(ConnectionFailed, match="ended before"):
            for event in client.stream("print(1)"):
                seen.append(event)
        assert seen == [Stdout("partial")]


def test_health_and_info(sdk):
    assert sdk.health() is True
    assert "isolation" in sdk.info()


def test_a_loss_told_on_a_stream_is_heard_and_the_next_cell_runs(sdk):
    # The stream that tells of the lost state is read to its end, so the server knows the
    # client heard it (a client that hangs up at the exit event looks like one that left).
    with sdk.contexts.create() as ctx:
        died = ctx.stream("import os; os.kill(os.getpid(), 9)").result()
        assert died.error is not None and died.error.name == "ContextDied"
        for _ in range(2):
            after = ctx.stream("1 + 1").result()
            assert (after.error, after.text) == (None, "2")
