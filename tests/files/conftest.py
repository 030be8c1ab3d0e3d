"""Helpers for the file API tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import Client


def py(client: Client, context_id: str, code: str) -> Any:
    """The value of the last expression of ``code`` run in the context (asserts no error)."""
    result = client.run(code, context_id=context_id)
    assert result["error"] is None, result
    items = [item for item in result["items"] if item.get("is_primary")]
    return eval(items[0]["text"]) if items else None  # noqa: S307 - our own repr


def stdout(client: Client, context_id: str, code: str, language: str = "python") -> str:
    result = client.run(code, context_id=context_id, language=language)
    assert result["error"] is None, result
    return "\n".join(result["logs"]["stdout"])


def workdir(client: Client, context_id: str) -> str:
    return client.get(f"/contexts/{context_id}").json()["cwd"]


def field_errors(response: Any) -> list[str]:
    body = response.json()
    assert body["message"] == "Invalid request", body
    return [error["field"] for error in body["errors"]]
