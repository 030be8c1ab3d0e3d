"""What the OpenAPI document says beyond the routes: parsed bodies, errors, the token."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from cellbox.api.models import InvalidRequest as InvalidRequestBody
from cellbox.api.models import Message
from cellbox.api.token_check import OPEN_PATHS, SECURITY_SCHEME

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": InvalidRequestBody, "description": "Invalid request"},
    401: {"model": Message, "description": "Missing or wrong token"},
    404: {"model": Message, "description": "Unknown context"},
    413: {"model": Message, "description": "Body too large"},
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI text for a body the route parses itself (to answer every error as a 400)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def document_security(app: FastAPI) -> None:
    """Show the token requirement (enforced by ``TokenCheck``) in the OpenAPI document."""
    make_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make_schema()
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEME
            for path, operations in schema["paths"].items():
                if path not in OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{"BearerAuth": []}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
