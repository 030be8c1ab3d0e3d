"""The HTTP API: routes, auth, request bodies, and the two views of an execution."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cellbox import __version__
from cellbox.api import errors
from cellbox.api.body_limit import BodyLimit
from cellbox.api.errors import InvalidRequest, parse_body
from cellbox.api.models import (
    ContextInfo,
    ContextList,
    CreateContextRequest,
    ExecuteRequest,
    ExecuteResponse,
    Health,
    Message,
)
from cellbox.api.models import (
    InvalidRequest as InvalidRequestBody,
)
from cellbox.api.responses import JSON
from cellbox.api.token_check import OPEN_PATHS, SECURITY_SCHEME, TokenCheck
from cellbox.auth import Token
from cellbox.config import Settings
from cellbox.contexts import Context, ContextRegistry
from cellbox.events import Fold
from cellbox.execution import DISCONNECT, Execution
from cellbox.runtimes import LANGUAGE_NAMES, RUNTIMES, resolve
from cellbox.sandbox import Limits, Sandbox

log = logging.getLogger("cellbox.api")


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI text for a body the route parses itself (to answer every error as a 400)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": InvalidRequestBody, "description": "Invalid request"},
    401: {"model": Message, "description": "Missing or wrong token"},
    404: {"model": Message, "description": "Unknown context"},
    413: {"model": Message, "description": "Body too large"},
}


def create_app(settings: Settings, token: Token, sandbox: Sandbox | None = None) -> FastAPI:
    """The cellbox ASGI application."""
    if sandbox is None:
        sandbox = Sandbox(
            settings.state_dir,
            Limits(
                memory_bytes=settings.memory_limit_mb << 20,
                pids=settings.pids_limit,
                file_size_bytes=settings.file_size_limit_mb << 20,
                open_files=settings.open_files_limit,
            ),
            network=settings.network,
            enabled=settings.sandbox,
        ).open()
    registry = ContextRegistry(settings, sandbox)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        registry.start()
        try:
            yield
        finally:
            await registry.close()

    app = FastAPI(
        title="cellbox",
        version=__version__,
        description="Persistent, isolated Python and TypeScript REPL contexts over HTTP.",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    # Our own limit answers 413 with the API's JSON body (Starlette's answers plain text).
    app.add_middleware(BodyLimit, limit=settings.body_limit_bytes)
    app.add_middleware(TokenCheck, token=token.value)  # outermost: 401 before reading a body
    _document_security(app)
    errors.install(app)
    app.state.registry = registry

    async def start(body: ExecuteRequest) -> Execution:
        """Find or create the context and queue the code on it."""
        if body.context_id is not None:
            context = registry.get(body.context_id)
            if body.language is not None and body.language != context.runtime.name:
                raise InvalidRequest.one(
                    "language",
                    f"context {context.id} runs {context.runtime.name}, not {body.language}",
                )
        else:
            context = await registry.create(RUNTIMES[body.language or "python"])
        timeout_ms = body.timeout_ms or settings.default_timeout_ms
        return registry.execute(context, body.code, body.env_vars or {}, timeout_ms)

    @app.post(
        "/execute",
        response_model=ExecuteResponse,
        responses=_ERRORS,
        openapi_extra=_json_body(ExecuteRequest),
        summary="Run code in a persistent context and wait for the whole result",
    )
    async def execute(request: Request) -> Response:
        execution = await start(parse_body(ExecuteRequest, await request.body()))
        fold = Fold()

        async def collect() -> None:
            await execution.started  # ContextGone (404) if deleted while queued
            async for batch in execution.batches():
                fold.add(batch)

        await _until_disconnect(request, execution, collect())
        return JSON(fold.response())

    @app.post(
        "/execute/async",
        responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
        openapi_extra=_json_body(ExecuteRequest),
        summary="Run code and stream its events as server-sent events",
    )
    async def execute_stream(request: Request) -> Response:
        execution = await start(parse_body(ExecuteRequest, await request.body()))
        await _until_disconnect(request, execution, execution.started)

        async def stream() -> AsyncIterator[bytes]:
            finished = False
            try:
                async for batch in execution.batches():
                    yield b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in batch)
                finished = True
            finally:
                if not finished:
                    execution.stop(DISCONNECT)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post(
        "/contexts",
        status_code=201,
        response_model=ContextInfo,
        responses={**_ERRORS, 429: {"model": Message}},
        openapi_extra=_json_body(CreateContextRequest),
        summary="Create a context",
    )
    async def create_context(request: Request) -> Response:
        raw = await request.body()
        body = parse_body(CreateContextRequest, raw if raw.strip() else b"{}")
        try:
            context = await registry.create(RUNTIMES[body.language or "python"], body.cwd)
        except ValueError as exc:
            raise InvalidRequest.one("cwd", str(exc)) from None
        return JSON(context.describe(), status_code=201)

    @app.get(
        "/contexts",
        response_model=ContextList,
        responses={401: _ERRORS[401]},
        summary="List live contexts",
    )
    async def list_contexts() -> Response:
        return JSON({"items": [c.describe() for c in registry.list()]})

    @app.get(
        "/contexts/{context_id}",
        response_model=ContextInfo,
        responses=_ERRORS,
        summary="Describe a context",
    )
    async def get_context(context_id: str) -> Response:
        return JSON(registry.get(context_id).describe())

    @app.delete(
        "/contexts/{context_id}",
        status_code=204,
        responses=_ERRORS,
        summary="Delete a context and kill its processes",
    )
    async def delete_context(context_id: str) -> Response:
        await registry.delete(context_id)
        return Response(status_code=204)

    @app.post(
        "/contexts/{context_id}/restart",
        response_model=ContextInfo,
        responses=_ERRORS,
        summary="Restart a context on a fresh process (state cleared)",
    )
    async def restart_context(context_id: str) -> Response:
        context: Context = await registry.restart(context_id)
        return JSON(context.describe())

    @app.post(
        "/contexts/{context_id}/interrupt",
        response_model=ContextInfo,
        responses=_ERRORS,
        summary="Interrupt the running execution (state kept)",
    )
    async def interrupt_context(context_id: str) -> Response:
        return JSON(registry.interrupt(context_id).describe())

    @app.get("/healthz", response_model=Health, summary="Liveness (no auth)")
    async def healthz() -> Response:
        return JSON({"status": "ok"})

    @app.get(
        "/info",
        responses={401: _ERRORS[401]},
        summary="Version, languages, limits and the isolation this host achieved",
    )
    async def info() -> Response:
        return JSON(
            {
                "version": __version__,
                "languages": {alias: resolve(alias).name for alias in LANGUAGE_NAMES},
                "contexts": {"live": len(registry.list()), "max": settings.max_contexts},
                "pools": {name: pool.size for name, pool in registry.pools.items()},
                "limits": {
                    "default_timeout_ms": settings.default_timeout_ms,
                    "output_cap_bytes": settings.output_cap_bytes,
                    "body_limit_bytes": settings.body_limit_bytes,
                    "idle_timeout_s": settings.idle_timeout_s,
                    "interrupt_grace_s": settings.interrupt_grace_s,
                },
                "isolation": sandbox.isolation(),
            }
        )

    return app


_WATCH_AFTER_S = 0.05


def _document_security(app: FastAPI) -> None:
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


async def _until_disconnect(request: Request, execution: Execution, work: Awaitable[Any]) -> Any:
    """Await ``work``; if the client goes away meanwhile, stop the execution."""

    async def watch(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        execution.stop(DISCONNECT)

    # Most executions end within milliseconds: watch only those that last.
    watcher: list[asyncio.Task[None]] = []
    later = asyncio.get_running_loop().call_later(
        _WATCH_AFTER_S, lambda: watcher.append(asyncio.create_task(watch(request.receive)))
    )
    try:
        return await work
    finally:
        later.cancel()
        for task in watcher:
            task.cancel()
