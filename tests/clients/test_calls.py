"""The pure call descriptions both SDK faces send: request shapes and answer parsing, no server."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace

import httpx
import orjson
import pytest

from cellbox.client import AsyncClient, Client, calls, core
from cellbox.client.models import ContextInfo, Execution, Exit, FileInfo, Stdout, Unpacked

CONFIG = core.Config("http://127.0.0.1:9", "tok", timeout=5.0)
INFO = {"id": "ctx_1", "language": "python", "cwd": "/w"}


@pytest.fixture
def http():
    with httpx.Client(**core.client_options(CONFIG)) as client:
        yield client


def test_execute_builds_the_body_and_waits_for_the_execution(http):
    ctx = core.ContextView(ContextInfo("ctx_1", "python"))
    call = calls.execute(CONFIG, "1", "py", ctx, {"A": "b"}, 1.5)
    request = call.build(http)
    assert (request.method, str(request.url)) == ("POST", "http://127.0.0.1:9/execute")
    body = {"code": "1", "language": "py", "context_id": "ctx_1", "env_vars": {"A": "b"}}
    assert orjson.loads(request.content) == {**body, "timeout_ms": 1500}
    assert request.extensions["timeout"]["read"] == 1.5 + core.EXECUTION_SLACK_S
    assert request.headers["authorization"] == "Bearer tok"
    answer = {"context_id": "ctx_1", "items": [{"is_primary": True, "text": "1"}]}
    assert call.result(orjson.dumps(answer)).text == "1"

    stream = calls.stream(call)
    assert (stream.method, stream.path, stream.json) == ("POST", "/execute/async", call.json)
    assert stream.timeout == call.timeout and stream.result(b"") is None


def test_an_execution_without_a_timeout_still_has_a_limit(http):
    call = calls.execute(CONFIG, "1", None, None, None, None)
    assert call.json == {"code": "1"}
    read = call.build(http).extensions["timeout"]["read"]
    assert read == core.MAX_EXECUTION_S + core.EXECUTION_SLACK_S


def test_an_execution_without_a_timeout_waits_for_the_server_default_once_known(http):
    call = calls.execute(CONFIG, "1", None, None, None, None)
    assert call.server_timeout and calls.stream(call).server_timeout
    for sent in (call, calls.stream(call)):
        known = sent.waiting(CONFIG, 3600.0)
        assert known.build(http).extensions["timeout"]["read"] == 3600.0 + core.EXECUTION_SLACK_S
        assert not known.server_timeout and known.json == sent.json
        assert sent.waiting(CONFIG, None).timeout == call.timeout  # not known: as before
    own = calls.execute(CONFIG, "1", None, None, None, 2.0)
    assert not own.server_timeout and own.waiting(CONFIG, 3600.0) is own


def test_the_server_default_timeout_read_from_info():
    assert core.server_default_timeout({"limits": {"default_timeout_ms": 3_600_000}}) == 3600.0
    for info in ({}, {"limits": None}, {"limits": {"default_timeout_ms": "30"}}, []):
        assert core.server_default_timeout(info) is None
    assert core.server_default_timeout({"limits": {"default_timeout_ms": True}}) is None


def test_server_calls():
    assert calls.health().result(b'{"status": "ok"}') is True
    assert calls.health().result(b'{"status": "draining"}') is False
    assert calls.info().result(b'{"limits": {"a": 1}}') == {"limits": {"a": 1}}


def test_context_calls(http):
    create = calls.create_context(CONFIG, "typescript", "sub", None, ["left-pad"])
    assert create.json == {"language": "typescript", "cwd": "sub", "packages": ["left-pad"]}
    assert create.timeout == core.execution_timeout(CONFIG, None)  # installs take long
    plain = calls.create_context(CONFIG, "python", None, {"allow": []}, None)
    assert plain.json == {"language": "python", "network": {"allow": []}}
    assert plain.timeout == core.http_timeout(CONFIG)
    assert create.result(orjson.dumps(INFO)) == ContextInfo("ctx_1", "python", "/w")

    listed = calls.list_contexts().result(orjson.dumps({"items": [INFO, INFO]}))
    assert [info.id for info in listed] == ["ctx_1", "ctx_1"]
    assert calls.get_context("a?b c").path == "/contexts/a%3Fb%20c"  # ("a/b": no context)
    deleted = calls.delete_context(core.ContextView(ContextInfo("ctx_2", "python")))
    assert (deleted.method, deleted.path, deleted.result(b"")) == (
        "DELETE",
        "/contexts/ctx_2",
        None,
    )
    for call, verb in (
        (calls.restart_context("c"), "restart"),
        (calls.interrupt_context("c"), "interrupt"),
    ):
        assert (call.method, call.path) == ("POST", f"/contexts/c/{verb}")
        assert call.result(orjson.dumps(INFO)).id == "ctx_1"


def test_archive_calls(http):
    down = calls.download_archive("c", "sub dir")
    assert str(down.build(http).url) == "http://127.0.0.1:9/contexts/c/archive?path=sub+dir"
    assert calls.download_archive("c", None).params == {}
    up = calls.upload_archive("c", None)
    request = up.build(http, content=b"tar", headers={"Content-Type": "application/octet-stream"})
    assert (request.method, request.content, request.url.query) == ("PUT", b"tar", b"")
    assert up.result(b'{"path": "", "files": 2, "size": 9}') == Unpacked("", 2, 9)


def test_file_calls(http):
    assert calls.upload_file("c", "a b.txt").path == "/contexts/c/files/a%20b.txt"
    assert calls.upload_file("c", "x").result(b'{"path": "x", "size": 3}').size == 3
    assert calls.download_file("c", "./x").path == "/contexts/c/files/%2E/x"
    assert calls.delete_file("c", "d/e").method == "DELETE"
    assert calls.download_file("c", "").path == "/contexts/c/files/"  # the server's 400

    listing = calls.list_files("c", "", recursive=True)
    assert str(listing.build(http).url).endswith("/contexts/c/files?recursive=true")
    assert calls.list_files("c", "d", recursive=False).params == {"recursive": "false", "path": "d"}
    entry = {"path": "d/a", "type": "file", "size": 1, "modified": None}
    assert listing.result(orjson.dumps({"items": [entry]})) == [FileInfo("d/a", "file", 1)]


def test_event_log_folds_at_the_exit_event():
    log = core.EventLog()
    first = log._read('{"type": "stdout", "data": "hi"}')
    assert first == Stdout("hi") and not log._finished(first) and log.execution is None
    last = log._read('{"type": "exit", "code": 0, "context_id": "ctx_1", "execution_count": 3}')
    assert isinstance(last, Exit) and log._finished(last)
    assert log.execution == Execution("ctx_1", logs=log.execution.logs, execution_count=3)
    assert log.execution.stdout == "hi\n"


def test_a_failed_download_leaves_no_file_and_keeps_file_objects_open(tmp_path):
    target = tmp_path / "partial.bin"
    with pytest.raises(OSError), core.destination(target) as file:
        file.write(b"half")
        raise OSError("connection dropped")
    assert not target.exists()
    with core.destination(target) as file:
        file.write(b"whole")
    assert target.read_bytes() == b"whole"
    sink = io.BytesIO()
    with core.destination(sink) as file:
        file.write(b"kept")
    assert not sink.closed and sink.getvalue() == b"kept"


def test_context_view_repr_names_the_face():
    class Context(core.ContextView):
        pass

    assert repr(Context(ContextInfo("ctx_1", "python"))) == "Context(id='ctx_1', language='python')"


def test_the_server_default_is_read_again_after_a_while(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(core, "time", SimpleNamespace(monotonic=lambda: now[0]))
    known = core.ServerDefault()
    assert known.due() and known.seconds is None
    known.read({"limits": {"default_timeout_ms": 30_000}})
    assert known.seconds == 30.0 and not known.due()
    now[0] += core.SERVER_DEFAULT_FOR_S - 1
    assert not known.due()
    now[0] += 1
    assert known.due()
    known.read({"limits": {"default_timeout_ms": 120_000}})  # a server restarted meanwhile
    assert known.seconds == 120.0 and not known.due()


def test_both_clients_wait_for_the_server_default_they_read_last(monkeypatch):
    """A server that answers ``GET /info`` with a default that changes (as a restarted one
    would) and every execution at once; what each execution's request waits is recorded."""
    now = [100.0]
    monkeypatch.setattr(core, "time", SimpleNamespace(monotonic=lambda: now[0]))
    default_ms = [30_000]
    infos: list[int] = []
    waits: list[float] = []
    answer = {"context_id": "ctx_1", "items": [], "logs": {"stdout": [], "stderr": []}}
    answer |= {"error": None, "execution_count": 1}

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/info":
            infos.append(default_ms[0])
            return httpx.Response(200, json={"limits": {"default_timeout_ms": default_ms[0]}})
        waits.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json=answer)

    def restarted_with(millis: int) -> None:
        default_ms[0] = millis
        now[0] += core.SERVER_DEFAULT_FOR_S

    slack = core.EXECUTION_SLACK_S
    with Client(CONFIG.url, "tok", transport=httpx.MockTransport(serve)) as client:
        client.execute("1")
        client.execute("1")  # the default read for the first still holds
        restarted_with(90_000)
        client.execute("1")
    assert infos == [30_000, 90_000] and waits == [30 + slack, 30 + slack, 90 + slack]

    infos.clear()
    waits.clear()
    restarted_with(30_000)

    async def in_asyncio() -> None:
        transport = httpx.MockTransport(serve)
        async with AsyncClient(CONFIG.url, "tok", transport=transport) as client:
            await client.execute("1")
            await client.execute("1")
            restarted_with(90_000)
            await client.execute("1")

    asyncio.run(in_asyncio())
    assert infos == [30_000, 90_000] and waits == [30 + slack, 30 + slack, 90 + slack]
