"""``POST /execute`` and ``POST /execute/async``: one execution, two views of its events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.types import Receive, Scope, Send

from cellbox.api.errors import InvalidRequest, parse_body
from cellbox.api.models import ExecuteRequest, ExecuteResponse
from cellbox.api.openapi import ERRORS, json_body
from cellbox.api.raw_routes import RawEndpoint, Served
from cellbox.api.responses import send_json
from cellbox.config import Settings
from cellbox.events import Fold
from cellbox.runtimes import RUNTIMES
from cellbox.sessions.execution import DISCONNECT, Execution
from cellbox.sessions.registry import ContextRegistry

# Most executions end within milliseconds: only those that last watch for a disconnect.
_WATCH_AFTER_S = 0.05
# An execution that tells of lost state looks this long for a client that left just before
# the end: that client never heard of the loss, so the next execution tells it again.
_HEARD_S = 0.05


class ExecuteEndpoints:
    """The two routes as raw ASGI endpoints (see :mod:`cellbox.api.raw_routes`)."""

    def __init__(self, registry: ContextRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.posts: dict[str, RawEndpoint] = {
            "/execute": self.execute,
            "/execute/async": self.execute_stream,
        }

    async def start(self, receive: Receive) -> Execution:
        """Parse the body, find or create the context and queue the code on it."""
        body = parse_body(ExecuteRequest, await _body(receive))
        registry = self.registry
        if body.context_id is not None:
            context = registry.get(body.context_id)
            if body.language is not None and body.language != context.runtime.name:
                raise InvalidRequest.one(
                    "language",
                    f"context {context.id} runs {context.runtime.name}, not {body.language}",
                )
        else:
            context = await registry.create(RUNTIMES[body.language or "python"])
        timeout_ms = body.timeout_ms or self.settings.default_timeout_ms
        return registry.execute(context, body.code, body.env_vars or {}, timeout_ms)

    async def execute(self, scope: Scope, receive: Receive, send: Send) -> None:
        execution = await self.start(receive)
        fold = Fold()

        async def collect() -> None:
            await execution.task  # one wake-up, at the end: the events are all queued
            await execution.started  # ContextGone (404) if deleted while queued
            for batch in execution.queued():
                fold.add(batch)

        async def answer() -> None:
            await _until_disconnect(receive, execution, collect())
            await send_json(send, 200, fold.response())

        await _answering(execution, answer())

    async def execute_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        execution = await self.start(receive)

        async def stream() -> list[dict[str, Any]]:
            """Send every batch but the last (the one with ``exit``), which it returns."""
            async for batch in execution.batches():
                if batch[-1]["type"] == "exit":
                    return batch
                await send({"type": "http.response.body", "body": _sse(batch), "more_body": True})
            raise AssertionError("an execution's events end with exit")

        async def answer() -> None:
            await _until_disconnect(receive, execution, execution.started)
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            # A client that leaves stops the execution; what it has left is read and dropped.
            # The last batch goes after the look for a client that left before hearing of a
            # loss: a client may hang up as soon as it has read the exit event.
            last = await _until_disconnect(receive, execution, stream())
            await send({"type": "http.response.body", "body": _sse(last), "more_body": False})

        await _answering(execution, answer())


async def _answering(execution: Execution, answer: Awaitable[None]) -> None:
    """Send ``answer``, then tell the execution whether all of it went out (once, whatever
    happened: see :meth:`Execution.answered`)."""
    whole = False
    try:
        await answer
        whole = True
    finally:
        execution.answered(whole)


def _sse(batch: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in batch)


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidRequest.one("body", "the client went away before sending the body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def routes(endpoints: ExecuteEndpoints) -> APIRouter:
    """The routes for FastAPI's OpenAPI document; ``RawRoutes`` serves them first."""
    router = APIRouter()

    @router.post(
        "/execute",
        response_model=ExecuteResponse,
        responses=ERRORS,
        openapi_extra=json_body(ExecuteRequest),
        summary="Run code in a persistent context and wait for the whole result",
    )
    async def execute(request: Request) -> Response:
        return Served(endpoints.execute, request)

    @router.post(
        "/execute/async",
        responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
        openapi_extra=json_body(ExecuteRequest),
        summary="Run code and stream its events as server-sent events",
    )
    async def execute_stream(request: Request) -> Response:
        return Served(endpoints.execute_stream, request)

    return router


async def _until_disconnect(receive: Receive, execution: Execution, work: Awaitable[Any]) -> Any:
    """Await ``work``; if the client goes away meanwhile, stop the execution (which then
    keeps a loss of state it told of for the next execution: the client did not hear it).
    The answer that tells of a loss is sent after ``work``: a client that left just before
    it has not heard of the loss either, so it is looked for first."""

    async def watch(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        execution.stop(DISCONNECT)

    watcher: list[asyncio.Task[None]] = []
    later = execution.task.get_loop().call_later(
        _WATCH_AFTER_S, lambda: watcher.append(asyncio.create_task(watch(receive)))
    )
    try:
        result = await work
        if execution.lost is not None:
            if not watcher:
                watcher.append(asyncio.create_task(watch(receive)))
            await asyncio.wait(watcher, timeout=_HEARD_S)
        return result
    finally:
        later.cancel()
        for task in watcher:
            task.cancel()
