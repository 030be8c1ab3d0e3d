"""POST /execute/async: SSE framing, event shapes, live delivery, disconnects."""

from __future__ import annotations

import time

import httpx

from tests.conftest import Client, Server


def test_sse_framing_is_data_lines_and_blank_lines(server: Server, client: Client):
    with client.stream("POST", "/execute/async", json={"code": "print('hi')\n1"}) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    blocks = raw.split("\n\n")
    assert blocks[-1] == ""
    for block in blocks[:-1]:
        assert block.startswith("data: ") and "\n" not in block


def test_event_sequence_of_a_new_context(client: Client):
    events = client.events(
        "print('a\\nb')\nimport sys; print('e', file=sys.stderr)\ndisplay('d')\n7"
    )
    assert events[0] == {"type": "stdout", "data": "a"}
    assert events[1] == {"type": "stdout", "data": "b"}
    assert events[2] == {"type": "stderr", "data": "e"}
    assert events[3] == {"type": "result", "data": {"is_primary": False, "text": "'d'"}}
    assert events[4] == {"type": "result", "data": {"is_primary": True, "text": "7"}}
    exit_event = events[5]
    assert exit_event["type"] == "exit" and exit_event["code"] == 0
    assert exit_event["execution_count"] == 1
    assert exit_event["context_id"].startswith("ctx_")
    assert len(events) == 6


def test_error_event_then_exit_code_1(client: Client, ctx: str):
    events = client.events("raise KeyError('k')", context_id=ctx)
    error = events[-2]
    assert error["type"] == "error"
    assert error["data"] == "KeyError: 'k'"
    assert events[-1] == {"type": "exit", "code": 1, "context_id": ctx, "execution_count": 1}


def test_timeout_event(client: Client, ctx: str):
    events = client.events("import time; time.sleep(10)", context_id=ctx, timeout_ms=300)
    assert events[-2]["type"] == "error"
    assert events[-2]["data"].startswith("TimeoutError: ")
    assert events[-1]["code"] == 1


def test_lines_arrive_as_they_are_printed(client: Client, ctx: str):
    code = "import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.7)"
    arrivals = []
    started = time.monotonic()
    with client.stream_events(code, context_id=ctx) as events:
        for event in events:
            arrivals.append((time.monotonic() - started, event))
    stdout = [(t, e["data"]) for t, e in arrivals if e["type"] == "stdout"]
    assert [data for _, data in stdout] == ["0", "1", "2"]
    total = arrivals[-1][0]
    assert total > 2.0
    assert stdout[0][0] < total - 1.2, arrivals  # the first line long before the end


def test_the_head_of_a_stream_arrives_before_its_first_event(client: Client, ctx: str):
    """A JSON answer's head waits for its body, to go out in one send; a stream's does not."""
    started = time.monotonic()
    with client.stream(
        "POST", "/execute/async", json={"code": "import time; time.sleep(2); 1", "context_id": ctx}
    ) as response:
        head_after = time.monotonic() - started
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        response.read()
        total = time.monotonic() - started
    assert total >= 2.0
    assert head_after < 1.5, (head_after, total)


def test_stream_without_context_id_reports_the_new_one(client: Client):
    events = client.events("v = 1")
    context_id = events[-1]["context_id"]
    assert client.run("v", context_id=context_id)["items"][0]["text"] == "1"


def test_disconnect_mid_stream_releases_the_context(server: Server, client: Client, ctx: str):
    client.run("kept = 'k'", context_id=ctx)
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}
    ) as c:
        with c.stream(
            "POST",
            "/execute/async",
            json={"code": "import time\nprint('go')\ntime.sleep(60)", "context_id": ctx},
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    break  # got the first event; now hang up
    started = time.monotonic()
    body = client.run("kept", context_id=ctx)
    assert time.monotonic() - started < 5
    assert body["items"][0]["text"] == "'k'"


def test_stream_validation_errors_are_json(client: Client):
    response = client.post("/execute/async", json={"code": 1})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "code"
