"""The HTTP surface: auth, status codes, validation errors, contexts CRUD, docs."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Client, Server


def test_healthz_needs_no_token(server: Server):
    response = httpx.get(server.url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/execute"),
        ("POST", "/execute/async"),
        ("POST", "/contexts"),
        ("GET", "/contexts"),
        ("GET", "/contexts/ctx_x"),
        ("DELETE", "/contexts/ctx_x"),
        ("POST", "/contexts/ctx_x/restart"),
        ("POST", "/contexts/ctx_x/interrupt"),
        ("GET", "/info"),
    ],
)
def test_every_endpoint_requires_the_token(server: Server, method: str, path: str):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "wrong"}):
        response = httpx.request(method, server.url + path, headers=headers, json={"code": "1"})
        assert response.status_code == 401, (method, path, headers)
        assert isinstance(response.json()["message"], str)


def test_bearer_and_raw_token_are_accepted(server: Server):
    for header in (f"Bearer {server.token}", f"bearer {server.token}", server.token):
        response = httpx.post(
            server.url + "/execute", headers={"Authorization": header}, json={"code": "40+2"}
        )
        assert response.status_code == 200, header
        assert response.json()["items"][0]["text"] == "42"


def test_execute_response_shape(client: Client):
    body = client.run("print('hello')\n6*7")
    assert set(body) == {"context_id", "items", "logs", "error", "execution_count"}
    assert body["context_id"].startswith("ctx_")
    assert body["items"] == [{"is_primary": True, "text": "42"}]
    assert body["logs"] == {"stdout": ["hello"], "stderr": []}
    assert body["error"] is None
    assert body["execution_count"] == 1


def _errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == "Invalid request"
    assert set(body) == {"message", "errors"}
    for entry in body["errors"]:
        assert set(entry) == {"field", "error"}
        assert isinstance(entry["error"], str) and entry["error"]
    return {entry["field"]: entry["error"] for entry in body["errors"]}


@pytest.mark.parametrize("path", ["/execute", "/execute/async"])
def test_malformed_json_is_a_400_on_body(client: Client, path: str):
    for raw in (b"{not json", b"", b"[1, 2]", b'"code"', b"null", b"{" * 100_000):
        response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
        assert "body" in _errors(response), raw[:20]


def test_body_without_content_type_is_still_json(client: Client):
    response = client.post("/execute", content=b'{"code": "1+1"}')
    assert response.status_code == 200
    assert response.json()["items"][0]["text"] == "2"


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "code"),
        ({"code": 1}, "code"),
        ({"code": None}, "code"),
        ({"code": "1", "language": "cobol"}, "language"),
        ({"code": "1", "language": 3}, "language"),
        ({"code": "1", "timeout_ms": 0}, "timeout_ms"),
        ({"code": "1", "timeout_ms": 600_001}, "timeout_ms"),
        ({"code": "1", "timeout_ms": -5}, "timeout_ms"),
        ({"code": "1", "timeout_ms": "100"}, "timeout_ms"),
        ({"code": "1", "timeout_ms": 1.5}, "timeout_ms"),
        ({"code": "1", "timeout_ms": True}, "timeout_ms"),
        ({"code": "1", "env_vars": {"A": 1}}, "env_vars"),
        ({"code": "1", "env_vars": ["A"]}, "env_vars"),
        ({"code": "1", "context_id": 5}, "context_id"),
    ],
)
def test_validation_errors_name_the_field(client: Client, body: dict, field: str):
    errors = _errors(client.post("/execute", json=body))
    assert field in errors
    if field == "timeout_ms" and type(body["timeout_ms"]) is int:
        assert errors["timeout_ms"] == "must be between 1 and 600000"


def test_one_error_entry_per_bad_field(client: Client):
    errors = _errors(
        client.post("/execute", json={"code": 3, "language": "cobol", "timeout_ms": 0})
    )
    assert set(errors) == {"code", "language", "timeout_ms"}


def test_timeout_bounds_are_accepted(client: Client):
    client.run("1", timeout_ms=1)  # may time out, but is a valid request (200)
    assert client.run("1", timeout_ms=600_000)["items"][0]["text"] == "1"


@pytest.mark.parametrize("alias", ["python", "PY", "Python3", " python "])
def test_python_aliases(client: Client, alias: str):
    body = client.run("1+1", language=alias)
    assert body["items"][0]["text"] == "2"
    info = client.get(f"/contexts/{body['context_id']}").json()
    assert info["language"] == "python"


def test_unknown_context_is_404(client: Client):
    for path in (
        "/contexts/ctx_nope",
        "/contexts/ctx_nope/restart",
        "/contexts/ctx_nope/interrupt",
    ):
        response = client.get(path) if path.count("/") == 2 else client.post(path)
        assert response.status_code == 404
        assert response.json() == {"message": "context ctx_nope not found"}
    assert client.delete("/contexts/ctx_nope").status_code == 404
    response = client.post("/execute", json={"code": "1", "context_id": "ctx_nope"})
    assert response.status_code == 404
    assert response.json() == {"message": "context ctx_nope not found"}
    response = client.post("/execute/async", json={"code": "1", "context_id": "ctx_nope"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")


def test_language_must_match_the_context(client: Client, ctx: str):
    errors = _errors(
        client.post("/execute", json={"code": "1", "context_id": ctx, "language": "typescript"})
    )
    assert "language" in errors
    # Omitting the language uses the context's own; an alias of it is fine.
    assert client.run("1", context_id=ctx)["items"][0]["text"] == "1"
    assert client.run("2", context_id=ctx, language="PY")["items"][0]["text"] == "2"


def test_body_over_the_limit_is_413(client: Client):
    huge = {"code": "x = '" + "a" * (11 << 20) + "'"}
    response = client.post("/execute", json=huge)
    assert response.status_code == 413
    assert "message" in response.json()
    # Chunked bodies (no Content-Length) are counted as they arrive.
    chunks = (b"a" * (1 << 20) for _ in range(12))
    response = client.post("/execute", content=chunks)
    assert response.status_code == 413
    assert client.run("'still fine'")["items"][0]["text"] == "'still fine'"


def test_contexts_crud(client: Client):
    created = client.post("/contexts", json={"language": "Python"})
    assert created.status_code == 201
    info = created.json()
    assert {"id", "language", "cwd", "network", "node"} <= set(info)  # may carry more
    assert info["language"] == "python"
    assert info["cwd"].startswith("/")
    context_id = info["id"]
    assert client.get(f"/contexts/{context_id}").json() == info
    listed = client.get("/contexts").json()
    assert set(listed) == {"items"}
    assert info in listed["items"]
    assert client.run("import os; os.getcwd()", context_id=context_id)["items"][0]["text"] == repr(
        info["cwd"]
    )
    assert client.post(f"/contexts/{context_id}/interrupt").json() == info
    assert client.post(f"/contexts/{context_id}/restart").json() == info
    deleted = client.delete(f"/contexts/{context_id}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"/contexts/{context_id}").status_code == 404
    assert info not in client.get("/contexts").json()["items"]
    assert client.post("/execute", json={"code": "1", "context_id": context_id}).status_code == 404


def test_create_context_defaults_to_python(client: Client):
    for kwargs in ({"json": {}}, {"content": b""}):
        response = client.post("/contexts", **kwargs)
        assert response.status_code == 201, response.text
        assert response.json()["language"] == "python"
        client.delete(f"/contexts/{response.json()['id']}")


def test_create_context_validation(client: Client):
    assert "language" in _errors(client.post("/contexts", json={"language": "cobol"}))
    assert "cwd" in _errors(client.post("/contexts", json={"cwd": "relative/dir"}))
    assert "cwd" in _errors(client.post("/contexts", json={"cwd": "/no/such/dir/here"}))
    assert "body" in _errors(client.post("/contexts", content=b"{oops"))


def test_context_with_cwd(client: Client):
    response = client.post("/contexts", json={"language": "python", "cwd": "/tmp"})
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["cwd"] == "/tmp"
    body = client.run("import os; os.getcwd()", context_id=info["id"])
    assert body["items"][0]["text"] == "'/tmp'"
    client.delete(f"/contexts/{info['id']}")


def test_each_context_gets_its_own_work_directory(client: Client):
    a = client.post("/contexts", json={}).json()
    b = client.post("/contexts", json={}).json()
    assert a["cwd"] != b["cwd"]
    client.run("open('mine.txt', 'w').write('a')", context_id=a["id"])
    assert client.run("import os; os.listdir()", context_id=b["id"])["items"][0]["text"] == "[]"
    for info in (a, b):
        client.delete(f"/contexts/{info['id']}")


def test_openapi_describes_the_real_shapes(client: Client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/execute",
        "/execute/async",
        "/contexts",
        "/contexts/{context_id}",
        "/contexts/{context_id}/restart",
        "/contexts/{context_id}/interrupt",
        "/healthz",
    ):
        assert path in paths, path
    body = paths["/execute"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"code", "language", "context_id", "env_vars", "timeout_ms"}
    assert body["required"] == ["code"]
    schemas = spec["components"]["schemas"]
    assert set(schemas["ExecuteResponse"]["properties"]) == {
        "context_id",
        "items",
        "logs",
        "error",
        "execution_count",
    }
    assert "json" in schemas["Item"]["properties"]
    assert client.get("/docs").status_code == 200


def test_info_reports_isolation(client: Client):
    info = client.get("/info").json()
    assert info["languages"]["py"] == "python"
    assert "isolation" in info
