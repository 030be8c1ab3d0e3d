"""``POST /execute`` and ``POST /execute/async``: one execution, two views of its events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from cellbox.api.errors import InvalidRequest, parse_body
from cellbox.api.models import ExecuteRequest, ExecuteResponse
from cellbox.api.openapi import ERRORS, json_body
from cellbox.api.responses import JSON
from cellbox.config import Settings
from cellbox.events import Fold
from cellbox.runtimes import RUNTIMES
from cellbox.sessions.execution import DISCONNECT, Execution
from cellbox.sessions.registry import ContextRegistry

# Most executions end within milliseconds: only those that last watch for a disconnect.
_WATCH_AFTER_S = 0.05


def routes(registry: ContextRegistry, settings: Settings) -> APIRouter:
    router = APIRouter()

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

    @router.post(
        "/execute",
        response_model=ExecuteResponse,
        responses=ERRORS,
        openapi_extra=json_body(ExecuteRequest),
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

    @router.post(
        "/execute/async",
        responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
        openapi_extra=json_body(ExecuteRequest),
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

    return router


async def _until_disconnect(request: Request, execution: Execution, work: Awaitable[Any]) -> Any:
    """Await ``work``; if the client goes away meanwhile, stop the execution."""

    async def watch(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        execution.stop(DISCONNECT)

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
