"""The server's answers against its own OpenAPI document: every status it answers is
documented for the operation, with the media type and body schema documented for it.

The cases are the ones an OpenAPI checker (schemathesis) found undocumented or mis-documented.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Client, Server
from tests.openapi_check import Doc, assert_documented, operation, request_schema, validator


@pytest.fixture(scope="module")
def doc(server: Server) -> Doc:
    return httpx.get(f"{server.url}/openapi.json").json()


def test_the_document_names_this_apis_errors_not_fastapis(doc: Doc) -> None:
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            assert "422" not in responses, (method, path)  # a bad request is a 400 here
            if op.get("parameters") or "requestBody" in op:
                invalid = responses["400"]["content"]["application/json"]["schema"]
                assert invalid == {"$ref": "#/components/schemas/InvalidRequest"}, (method, path)
            if "security" in op:
                assert "401" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith("2") and len(response.get("content", {})) > 1:
                    # only a choice the route really makes, not FastAPI's JSON placeholder
                    assert response["content"].get("application/json") != {"schema": {}}


def test_open_and_token_errors_are_documented(doc: Doc, server: Server, client: Client) -> None:
    assert_documented(doc, "GET", "/healthz", client.get("/healthz", params={"ready": "maybe"}))
    ready = client.get("/healthz", params={"ready": "true"})  # 200, or 503 while warming up
    assert_documented(doc, "GET", "/healthz", ready)
    for path in ("/metrics", "/info", "/contexts"):
        anonymous = httpx.get(server.url + path)
        assert anonymous.status_code == 401
        assert_documented(doc, "GET", path, anonymous)
    metrics = client.get("/metrics")
    assert_documented(doc, "GET", "/metrics", metrics)
    assert not metrics.headers["content-type"].startswith("application/json")


def test_bodies_the_document_calls_optional_are(doc: Doc, client: Client) -> None:
    assert operation(doc, "POST", "/contexts")["requestBody"]["required"] is False
    created = client.post("/contexts")  # no body at all: the defaults
    assert created.status_code == 201, created.text
    assert_documented(doc, "POST", "/contexts", created)
    context_id = created.json()["id"]
    files = "/contexts/{context_id}/files/{path}"
    try:
        assert operation(doc, "PUT", files)["requestBody"]["required"] is False
        empty = client.put(f"/contexts/{context_id}/files/empty.txt")  # an empty file
        assert empty.status_code == 200 and empty.json() == {"path": "empty.txt", "size": 0}
        assert_documented(doc, "PUT", files, empty)
    finally:
        client.delete(f"/contexts/{context_id}")


def test_downloads_answer_the_documented_types(doc: Doc, client: Client, ctx: str) -> None:
    files = "/contexts/{context_id}/files/{path}"
    client.put(f"/contexts/{ctx}/files/t.csv", content=b"a,b\n1,2\n")
    whole = client.get(f"/contexts/{ctx}/files/t.csv")
    assert whole.headers["content-type"].startswith("text/csv")  # guessed from the name
    assert_documented(doc, "GET", files, whole)
    headers = [p["name"] for p in operation(doc, "GET", files)["parameters"] if p["in"] == "header"]
    assert headers == ["Range"]
    part = client.get(f"/contexts/{ctx}/files/t.csv", headers={"Range": "bytes=2-"})
    assert part.status_code == 206
    assert_documented(doc, "GET", files, part)
    past = client.get(f"/contexts/{ctx}/files/t.csv", headers={"Range": "bytes=100-"})
    assert past.status_code == 416
    assert_documented(doc, "GET", files, past)
    assert_documented(
        doc, "GET", "/contexts/{context_id}/archive", client.get(f"/contexts/{ctx}/archive")
    )


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"timeout_ms": 600_001}, "timeout_ms"),
        ({"timeout_ms": 600_000}, None),
        ({"timeout_ms": 1500.0}, None),  # JSON's integer 1500, however a client writes it
        ({"timeout_ms": 1.5}, "timeout_ms"),
        ({"timeout_ms": 1e23}, "timeout_ms"),
        ({"language": "cobol"}, "language"),
        ({"language": " PyThOn3 "}, None),
        ({"env_vars": {"": "x"}}, "env_vars"),
        ({"env_vars": {"A=B": "x"}}, "env_vars"),
        ({"env_vars": {"A": "x\u0000"}}, "env_vars"),
        ({"env_vars": {"A": "x=\ny"}}, None),
    ],
)
def test_the_execute_schema_and_the_server_agree(
    doc: Doc, client: Client, ctx: str, fields: dict[str, Any], bad_field: str | None
) -> None:
    body = {"code": "1", "context_id": ctx, **fields}
    documented_valid = validator(doc, request_schema(doc, "POST", "/execute")).is_valid(body)
    got = client.post("/execute", json=body)
    assert_documented(doc, "POST", "/execute", got)
    _agree(documented_valid, got, 200, bad_field)


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"cwd": "relative/dir"}, "cwd"),
        ({"cwd": "/tmp"}, None),
        ({"network": "host"}, "network"),  # a context may not ask for the host's network
        ({"network": {"allow": ["example.org"], "deny": []}}, "network"),
        ({"network": "off"}, None),
        ({"packages": ["-e ."]}, "packages"),
        ({"packages": ["numpy\tx"]}, "packages"),
        ({"packages": ["   "]}, "packages"),
    ],
)
def test_the_context_schema_and_the_server_agree(
    doc: Doc, client: Client, fields: dict[str, Any], bad_field: str | None
) -> None:
    documented_valid = validator(doc, request_schema(doc, "POST", "/contexts")).is_valid(fields)
    got = client.post("/contexts", json=fields)
    assert_documented(doc, "POST", "/contexts", got)
    if got.status_code == 201:
        client.delete(f"/contexts/{got.json()['id']}")
    _agree(documented_valid, got, 201, bad_field)


def _agree(documented_valid: bool, got: Any, ok: int, bad_field: str | None) -> None:
    """The document and the server take the same side: valid and ``ok``, or a 400 on
    ``bad_field`` alone."""
    assert documented_valid is (bad_field is None), got.request.content
    if bad_field is None:
        assert got.status_code == ok, got.text
    else:
        assert got.status_code == 400, got.text
        assert [e["field"] for e in got.json()["errors"]] == [bad_field]
