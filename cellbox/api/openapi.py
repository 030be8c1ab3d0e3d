"""What the OpenAPI document says beyond the routes: parsed bodies, errors, the token."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from cellbox.api.models import InvalidRequest as InvalidRequestBody
from cellbox.api.models import Message
from cellbox.api.token_check import SECURITY_SCHEME, is_open

# Every route documents its own statuses; the ones all routes share are added by
# ``document_api``: 400 wherever a parameter or body is read, 413 wherever a body is sent,
# 401 wherever the token is needed.
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Message, "description": "Unknown context"},
    503: {
        "model": Message,
        "description": "Server shutting down, or the context's node unreachable",
    },
}
# What a route that runs code may answer (it may also create the context).
ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    429: {"model": Message, "description": "Too many live contexts"},
}


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """OpenAPI text for a body the route parses itself (to answer every error as a 400)."""
    schema = model.model_json_schema()
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": required, "content": content}}


def _shared_statuses(operation: dict[str, Any], secured: bool, refs: dict[str, str]) -> None:
    responses = operation["responses"]
    # FastAPI documents a 422 of its own shape where it validates; this API answers a 400.
    read = responses.pop("422", None) is not None or "requestBody" in operation
    shared = {
        "400": (read, "Invalid request: one entry per bad field", refs["InvalidRequest"]),
        "401": (secured, "Missing or wrong token", refs["Message"]),
        "413": ("requestBody" in operation, "Body too large", refs["Message"]),
    }
    for status, (applies, description, ref) in shared.items():
        if applies and status not in responses:
            content = {"application/json": {"schema": {"$ref": ref}}}
            responses[status] = {"description": description, "content": content}
    for status, response in responses.items():
        content = response.get("content", {})
        # FastAPI names the app's default (JSON) class on routes without a response model,
        # even where the route documents the one media type it answers.
        if (
            status.startswith("2")
            and len(content) > 1
            and content.get("application/json") == {"schema": {}}
        ):
            del content["application/json"]


def _add_component(schema: dict[str, Any], model: type[BaseModel]) -> str:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(model_schema.pop("$defs", {}))
    components.setdefault(model.__name__, model_schema)
    return f"#/components/schemas/{model.__name__}"


def document_api(app: FastAPI) -> None:
    """Complete the OpenAPI document with the token requirement (enforced by ``TokenCheck``)
    and the statuses every route shares."""
    make_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make_schema()
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEME
            refs = {m.__name__: _add_component(schema, m) for m in (InvalidRequestBody, Message)}
            for path, operations in schema["paths"].items():
                secured = not is_open(path)
                for operation in operations.values():
                    if secured:
                        operation["security"] = [{"BearerAuth": []}]
                    _shared_statuses(operation, secured, refs)
            for unused in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(unused, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
