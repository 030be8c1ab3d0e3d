"""Checks of an answer against the server's own OpenAPI document (shared by the tests)."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator

Doc = dict[str, Any]


def operation(doc: Doc, method: str, path: str) -> dict[str, Any]:
    return doc["paths"][path][method.lower()]


def validator(doc: Doc, schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    return Draft202012Validator({**schema, "components": doc["components"]})


def assert_documented(doc: Doc, method: str, path: str, response: httpx.Response) -> None:
    """``response`` is one the document allows for ``method path``: status, type, body."""
    responses = operation(doc, method, path)["responses"]
    status = str(response.status_code)
    assert status in responses, (method, path, status, response.text, sorted(responses))
    content = responses[status].get("content", {})
    if not content:
        assert response.content == b"", response.content
        return
    media = response.headers["content-type"].split(";")[0].strip()
    documented = {name.split(";")[0].strip(): spec for name, spec in content.items()}
    spec = documented.get(media, documented.get("*/*"))
    assert spec is not None, (method, path, status, media, sorted(documented))
    if media == "application/json" and spec.get("schema"):
        errors = list(validator(doc, spec["schema"]).iter_errors(response.json()))
        assert not errors, (method, path, status, response.json(), errors[0].message)


def request_schema(doc: Doc, method: str, path: str) -> dict[str, Any]:
    return operation(doc, method, path)["requestBody"]["content"]["application/json"]["schema"]
