"""``/contexts``: create, list, describe, delete, restart and interrupt contexts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from cellbox.api.errors import InvalidRequest, parse_body
from cellbox.api.models import ContextInfo, ContextList, CreateContextRequest, Message
from cellbox.api.openapi import ERRORS, NOT_FOUND, json_body
from cellbox.api.responses import JSON
from cellbox.packages.creation import PackageInstallError
from cellbox.packages.creation import install as install_packages
from cellbox.runtimes import RUNTIMES
from cellbox.sandbox import netpolicy
from cellbox.sessions.registry import ContextRegistry

# What describe, restart and interrupt answer: the context's description, or a usual error.
ANSWERS_INFO: dict[str, Any] = {"response_model": ContextInfo, "responses": NOT_FOUND}


def routes(registry: ContextRegistry) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/contexts",
        status_code=201,
        response_model=ContextInfo,
        responses={
            429: ERRORS[429],
            503: {"model": Message, "description": "Shutting down, or no worker could start"},
        },
        openapi_extra=json_body(CreateContextRequest, required=False),  # {} when empty
        summary="Create a context",
    )
    async def create_context(request: Request) -> Response:
        raw = await request.body()
        body = parse_body(CreateContextRequest, raw if raw.strip() else b"{}")
        policy = None
        if body.network is not None:
            try:
                policy = netpolicy.parse(body.network)
                await registry.network.admit(policy)
            except netpolicy.PolicyError as exc:
                raise InvalidRequest.one("network", str(exc)) from None
        try:
            runtime = RUNTIMES[body.language or "python"]
            context = await registry.create(runtime, body.cwd, policy)
        except ValueError as exc:
            raise InvalidRequest.one("cwd", str(exc)) from None
        if body.packages:
            try:
                await install_packages(registry, context, body.packages)
            except PackageInstallError as exc:
                raise InvalidRequest.one("packages", str(exc)) from None
        return JSON(context.describe(), status_code=201)

    @router.get(
        "/contexts",
        response_model=ContextList,
        summary="List live contexts",
    )
    async def list_contexts() -> Response:
        return JSON({"items": [c.describe() for c in registry.list()]})

    @router.get("/contexts/{context_id}", **ANSWERS_INFO, summary="Describe a context")
    async def get_context(context_id: str) -> Response:
        return JSON(registry.get(context_id).describe())

    @router.delete(
        "/contexts/{context_id}",
        status_code=204,
        responses=NOT_FOUND,
        summary="Delete a context and kill its processes",
    )
    async def delete_context(context_id: str) -> Response:
        await registry.delete(context_id)
        return Response(status_code=204)

    @router.post(
        "/contexts/{context_id}/restart",
        **ANSWERS_INFO,
        summary="Restart a context on a fresh process (state cleared)",
    )
    async def restart_context(context_id: str) -> Response:
        return JSON((await registry.restart(context_id)).describe())

    @router.post(
        "/contexts/{context_id}/interrupt",
        **ANSWERS_INFO,
        summary="Interrupt the running execution (state kept)",
    )
    async def interrupt_context(context_id: str) -> Response:
        return JSON(registry.interrupt(context_id).describe())

    return router
