"""Edges of the contract an outside client meets: bad environment entries, 405's Allow, HEAD."""

from __future__ import annotations

import pytest

from tests.conftest import Client


@pytest.mark.parametrize("language", ["python", "typescript"])
@pytest.mark.parametrize(
    "env_vars",
    [{"A=B": "x"}, {"": "x"}, {"A\u0000B": "x"}, {"A": "x\u0000y"}],
    ids=["equals-in-name", "empty-name", "nul-in-name", "nul-in-value"],
)
def test_environment_entries_a_process_cannot_have_are_400(
    client: Client, language: str, env_vars: dict[str, str]
) -> None:
    before = {c["id"] for c in client.get("/contexts").json()["items"]}
    got = client.post("/execute", json={"code": "1", "language": language, "env_vars": env_vars})
    assert got.status_code == 400, got.text
    assert [e["field"] for e in got.json()["errors"]] == ["env_vars"]
    assert {c["id"] for c in client.get("/contexts").json()["items"]} == before  # none made


def test_405_names_the_allowed_methods(client: Client) -> None:
    for method, path, allowed in [
        ("GET", "/execute", {"POST"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("PUT", "/info", {"GET", "HEAD"}),
        ("PATCH", "/contexts", {"GET", "HEAD", "POST"}),
    ]:
        got = client.request(method, path)
        assert got.status_code == 405, (method, path, got.text)
        assert got.json() == {"message": "Method Not Allowed"}
        assert {m.strip() for m in got.headers["allow"].split(",")} == allowed


def test_head_of_health_and_of_a_file(client: Client, ctx: str) -> None:
    health = client.head("/healthz")
    assert health.status_code == 200 and health.content == b""
    client.put(f"/contexts/{ctx}/files/data/t.csv", content=b"a,b\n1,2\n")
    whole = client.head(f"/contexts/{ctx}/files/data/t.csv")
    assert whole.status_code == 200 and whole.content == b""
    assert whole.headers["content-length"] == "8"
    assert whole.headers["content-type"].startswith("text/csv")
    part = client.head(f"/contexts/{ctx}/files/data/t.csv", headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.headers["content-range"] == "bytes 0-3/8"
    assert part.headers["content-length"] == "4"
    assert client.head(f"/contexts/{ctx}/files/nope.csv").status_code == 404


def test_head_is_answered_wherever_get_is(client: Client, ctx: str) -> None:
    for path in ("/info", "/contexts", f"/contexts/{ctx}", f"/contexts/{ctx}/files", "/metrics"):
        got, head = client.get(path), client.head(path)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-type"] == got.headers["content-type"], path
    assert client.head("/contexts/ctx_gone").status_code == 404
    assert client.head("/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    not_get = client.head("/execute")  # POST only: no HEAD either
    assert not_get.status_code == 405 and not_get.headers["allow"] == "POST"


def test_names_that_are_not_utf8_are_listed(client: Client, ctx: str) -> None:
    made = client.run(
        "import os\nopen(b'bad\\xff.txt', 'wb').write(b'x')\nos.makedirs(b'd\\xfe')\n"
        "open(b'd\\xfe/in.txt', 'wb').write(b'yy')",
        context_id=ctx,
    )
    assert made["error"] is None, made
    top = client.get(f"/contexts/{ctx}/files")
    assert top.status_code == 200, top.text
    assert [(i["path"], i["type"]) for i in top.json()["items"]] == [
        ("bad\ufffd.txt", "file"),
        ("d\ufffd", "dir"),
    ]
    below = client.get(f"/contexts/{ctx}/files", params={"recursive": "true"}).json()["items"]
    assert ("d\ufffd/in.txt", 2) in [(i["path"], i["size"]) for i in below]


def test_answers_carry_no_software_banner(client: Client, ctx: str) -> None:
    for got in (
        client.get("/healthz"),
        client.post("/execute", json={"code": "1", "context_id": ctx}),
        client.get("/contexts/nope"),
    ):
        assert "server" not in got.headers, (got.request.url, got.headers)
        assert "date" in got.headers  # RFC 9110: an origin server with a clock sends Date
