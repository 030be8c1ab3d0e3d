"""Three nodes on loopback act as one: every endpoint works through any node."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sys
import tarfile
import time
import typing

import httpx
import pytest
import typing_extensions
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import context_on, node_of, wait_for_peers


def test_contexts_land_on_every_node_and_work_through_any(cluster, c0):
    made = [c0.post("/contexts", json={}).json() for _ in range(6)]
    assert {node_of(c["id"]) for c in made} == set(cluster.ids)
    assert all(c["node"] == node_of(c["id"]) for c in made)
    for i, context in enumerate(made):
        assert c0.run(f"x = {i}; x", context_id=context["id"])["items"][0]["text"] == str(i)
    with cluster.client(1) as c1, cluster.client(2) as c2:
        for i, context in enumerate(made):
            result = c1.run("x * 10", context_id=context["id"])
            assert result["items"][0]["text"] == str(i * 10)
            assert result["execution_count"] == 2
            assert c2.get(f"/contexts/{context['id']}").json() == context
        listed = c2.get("/contexts").json()
        assert listed["unreachable"] == []
        assert sorted(c["id"] for c in listed["items"]) == sorted(c["id"] for c in made)
        for context in made:
            assert c1.post(f"/contexts/{context['id']}/restart").json() == context
            assert c2.run("'x' in globals()", context_id=context["id"])["items"][0]["text"] == (
                "False"
            )
            assert c1.delete(f"/contexts/{context['id']}").status_code == 204
            gone = c2.get(f"/contexts/{context['id']}")
            assert gone.status_code == 404
            assert gone.json() == {"message": f"context {context['id']} not found"}


def test_execute_without_context_is_placed_too(cluster, c0):
    ids = [c0.run("1")["context_id"] for _ in range(6)]
    assert len({node_of(i) for i in ids}) >= 2  # spread (exact balance: stats may be a second old)
    events = c0.events("print('hi')")
    assert events[0] == {"type": "stdout", "data": "hi"}
    assert node_of(events[-1]["context_id"]) in cluster.ids


def test_leap0_client_through_one_node(cluster, c0, monkeypatch):
    if sys.version_info < (3, 12):
        monkeypatch.setattr(typing, "TypedDict", typing_extensions.TypedDict)
    from leap0._sync import code_interpreter
    from leap0._sync._transport import Transport

    url = cluster.nodes[0].url
    monkeypatch.setattr(code_interpreter, "sandbox_base_url", lambda *_a, **_k: url)
    transport = Transport(api_key=cluster.nodes[0].token, base_url=url)
    try:
        sdk = code_interpreter.CodeInterpreterClient(transport, sandbox_domain="local")
        contexts = [sdk.create_context("sb", language="python") for _ in range(3)]
        assert len({node_of(c.id) for c in contexts}) >= 2  # spread over the nodes
        for n, context in enumerate(contexts):
            sdk.execute("sb", code=f"n = {n}", context_id=context.id)
            result = sdk.execute("sb", code="n + 40", context_id=context.id)
            assert result.main_text == str(n + 40)
            assert result.context_id == context.id
            events = list(sdk.execute_stream("sb", code="print(n)", context_id=context.id))
            assert events[0].data == str(n)
            assert events[-1].code == 0
        assert {c.id for c in contexts} <= {c.id for c in sdk.list_contexts("sb")}
        for context in contexts:
            sdk.delete_context("sb", context.id)
        assert not {c.id for c in contexts} & {c.id for c in sdk.list_contexts("sb")}
    finally:
        transport.close()


def test_sse_through_a_forwarding_node_arrives_event_by_event(cluster, c0):
    context = context_on(cluster.nodes[1])
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.4)"
    arrivals = []
    with c0.stream_events(code, context_id=context) as events:
        for event in events:
            arrivals.append((time.monotonic(), event))
    assert [e for _, e in arrivals][:3] == [{"type": "stdout", "data": str(i)} for i in range(3)]
    assert arrivals[-1][1]["type"] == "exit"
    assert arrivals[2][0] - arrivals[0][0] >= 0.6  # not buffered until the end


STOPPABLE = (
    "import time\ntry:\n    print('running', flush=True)\n    time.sleep(60)\n"
    "except KeyboardInterrupt:\n    stopped = 'by the client leaving'\n    raise"
)


def test_a_client_leaving_a_forwarded_stream_stops_the_execution(cluster, c0):
    context = context_on(cluster.nodes[2])
    with c0.stream_events(STOPPABLE, context_id=context) as events:
        assert next(events) == {"type": "stdout", "data": "running"}
    began = time.monotonic()
    result = c0.run("stopped", context_id=context)
    assert result["items"][0]["text"] == "'by the client leaving'"
    assert time.monotonic() - began < 10


def test_a_client_leaving_a_forwarded_execute_stops_it(cluster, c0):
    context = context_on(cluster.nodes[1])
    with pytest.raises(httpx.ReadTimeout):
        c0.post("/execute", json={"code": STOPPABLE, "context_id": context}, timeout=1.0)
    began = time.monotonic()
    result = c0.run("stopped", context_id=context)
    assert result["items"][0]["text"] == "'by the client leaving'"
    assert time.monotonic() - began < 10


def test_interrupt_and_errors_through_a_forwarding_node(cluster, c0):
    context = context_on(cluster.nodes[2])
    with c0.stream_events(
        "import time\nprint('go', flush=True)\ntime.sleep(60)", context_id=context
    ) as events:
        assert next(events)["type"] == "stdout"
        assert c0.post(f"/contexts/{context}/interrupt").status_code == 200
        rest = list(events)
    assert rest[0]["name"] == "KeyboardInterrupt"
    assert rest[-1]["code"] == 1
    wrong = c0.post("/execute", json={"code": "1", "context_id": context, "language": "ts"})
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["field"] == "language"
    missing = "ctx_n1_" + "0" * 24
    assert c0.get(f"/contexts/{missing}").status_code == 404
    assert c0.post("/execute", json={"code": "1", "context_id": missing}).status_code == 404
    assert c0.get("/contexts/ctx_nobody_" + "0" * 24).status_code == 404
    assert httpx.get(f"{cluster.nodes[0].url}/contexts/{context}").status_code == 401


def test_placement_fills_every_node_before_refusing(cluster, c0):
    made = []
    for _ in range(12):
        response = c0.post("/contexts", json={})
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    assert sorted(map(node_of, made)) == sorted(cluster.ids * 4)
    full = c0.post("/contexts", json={})
    assert full.status_code == 429
    assert "too many live contexts" in full.json()["message"]
    assert c0.post("/execute", json={"code": "1"}).status_code == 429


def test_metrics_of_every_node(cluster, c0):
    context_on(cluster.nodes[1])
    for index, node_id in enumerate(cluster.ids):
        with cluster.client(index) as client:
            text = client.get("/metrics").text
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        assert {s.labels["node"] for s in samples} == {node_id}
        live = sum(s.value for s in samples if s.name == "cellbox_contexts_live")
        assert live == (1 if node_id == "n1" else 0)


def _file_bytes(node) -> dict[str, float]:
    with node.client() as client:
        text = client.get("/metrics").text
    return {
        s.labels["direction"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "cellbox_file_bytes_total"
    }


def test_files_and_archives_stream_through_a_forwarding_node(cluster, c0):
    owner = cluster.nodes[1]
    context = context_on(owner)
    before = _file_bytes(owner)
    payload = os.urandom(6 << 20) + b"end"
    put = c0.put(f"/contexts/{context}/files/data/blob.bin", content=payload)
    assert put.status_code == 200, put.text
    assert put.json() == {"path": "data/blob.bin", "size": len(payload)}

    def pieces():  # no length known: the forwarding node streams it on, chunked
        for start in range(0, len(payload), 1 << 20):
            yield payload[start : start + (1 << 20)]

    chunked = c0.put(f"/contexts/{context}/files/data/chunked.bin", content=pieces())
    assert chunked.json() == {"path": "data/chunked.bin", "size": len(payload)}
    digest = hashlib.sha256(payload).hexdigest()
    code = (
        "import hashlib\n"
        "','.join(hashlib.sha256(open(f'data/{n}.bin', 'rb').read()).hexdigest()"
        " for n in ('blob', 'chunked'))"
    )
    assert c0.run(code, context_id=context)["items"][0]["text"] == repr(f"{digest},{digest}")
    with c0.stream("GET", f"/contexts/{context}/files/data/blob.bin") as download:
        assert download.status_code == 200
        assert download.headers["content-length"] == str(len(payload))
        parts = list(download.iter_raw())
    assert b"".join(parts) == payload
    assert len(parts) > 1  # arrived in pieces, not held whole
    ranged = c0.get(f"/contexts/{context}/files/data/blob.bin", headers={"Range": "bytes=-3"})
    assert (ranged.status_code, ranged.content) == (206, b"end")
    listed = c0.get(f"/contexts/{context}/files", params={"path": "data"}).json()["items"]
    assert sorted(item["path"] for item in listed) == ["data/blob.bin", "data/chunked.bin"]
    archive = c0.get(f"/contexts/{context}/archive", params={"path": "data"})
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert {"blob.bin", "chunked.bin"} <= {os.path.basename(n) for n in tar.getnames()}
    unpacked = c0.put(
        f"/contexts/{context}/archive", params={"path": "copy"}, content=archive.content
    )
    assert unpacked.status_code == 200, unpacked.text
    assert unpacked.json()["files"] == 2
    assert c0.delete(f"/contexts/{context}/files/data").status_code == 204
    missing = c0.get(f"/contexts/{context}/files/data/blob.bin")
    assert missing.status_code == 404
    assert missing.json() == {"message": "file not found: data/blob.bin"}
    after = _file_bytes(owner)  # counted where the bytes were written and read
    assert after["in"] - before["in"] >= 2 * len(payload) + len(archive.content)
    assert after["out"] - before["out"] >= len(payload) + 3 + len(archive.content)


@pytest.mark.slow
def test_a_hung_node_is_503_within_2_s(cluster, c0):
    context = context_on(cluster.nodes[1])
    running = []
    with cluster.client(0) as waiting:
        cluster.nodes[1].process.send_signal(signal.SIGSTOP)
        try:
            began = time.monotonic()
            response = waiting.post("/execute", json={"code": "1", "context_id": context})
            running.append(time.monotonic() - began)
            assert response.status_code == 503
            assert response.json() == {"message": "node n1 is unreachable"}
            began = time.monotonic()
            assert c0.get(f"/contexts/{context}").status_code == 503
            running.append(time.monotonic() - began)
            began = time.monotonic()
            assert c0.get("/contexts").json()["unreachable"] == ["n1"]
            running.append(time.monotonic() - began)
            assert c0.run("1", context_id=context_on(cluster.nodes[2]))["items"][0]["text"] == "1"
        finally:
            cluster.nodes[1].process.send_signal(signal.SIGCONT)
    assert running[0] < 2.5  # the refresh that finds it hung answers the waiting request
    assert running[1] < 0.5  # known to be unreachable: answered at once
    assert running[2] < 0.5  # and the listing does not wait for it either
    wait_for_peers(c0, 2)
    assert c0.run("2", context_id=context)["items"][0]["text"] == "2"


@pytest.mark.slow
def test_a_killed_node_is_503_fast_and_its_contexts_are_404_once_back(cluster, c0):
    on = {
        node_id: context_on(node) for node_id, node in zip(cluster.ids, cluster.nodes, strict=True)
    }
    victim = cluster.nodes[2]
    victim.stop(signal.SIGKILL)
    began = time.monotonic()
    lost = c0.post("/execute", json={"code": "1", "context_id": on["n2"]})
    assert time.monotonic() - began < 2
    assert lost.status_code == 503
    assert lost.json() == {"message": "node n2 is unreachable"}
    for path in (f"/contexts/{on['n2']}", f"/contexts/{on['n2']}/files"):
        began = time.monotonic()
        assert c0.get(path).status_code == 503
        assert time.monotonic() - began < 2
    # the rest of the cluster works on, and new contexts avoid the dead node
    assert c0.run("2 + 2", context_id=on["n1"])["items"][0]["text"] == "4"
    assert c0.run("3 + 3", context_id=on["n0"])["items"][0]["text"] == "6"
    placed = [c0.post("/contexts", json={}).json()["id"] for _ in range(4)]
    assert {node_of(i) for i in placed} == {"n0", "n1"}
    listed = c0.get("/contexts").json()
    assert listed["unreachable"] == ["n2"]
    assert on["n2"] not in {c["id"] for c in listed["items"]}
    # it comes back (same id, empty): its old contexts are gone, it takes new ones
    victim.start()
    deadline = time.monotonic() + 15
    while c0.get(f"/contexts/{on['n2']}").status_code != 404:
        assert time.monotonic() < deadline, "the restarted node was not seen"
        time.sleep(0.2)
    gone = c0.post("/execute", json={"code": "1", "context_id": on["n2"]})
    assert gone.status_code == 404
    message = gone.json()["message"]  # the owner tells why, through the forwarding node
    assert message.startswith(f"context {on['n2']} not found: it was lost when the server stopped")
    wait_for_peers(c0, 2)
    placed = [c0.post("/contexts", json={}).json()["id"] for _ in range(3)]
    assert "n2" in {node_of(i) for i in placed}
    assert c0.get("/contexts").json()["unreachable"] == []
