"""The HTTP API, assembled: middleware, error handlers, and the route modules."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI
from starlette.types import ASGIApp

from cellbox import __version__
from cellbox.api import contexts, errors, execute, files, info, playground
from cellbox.api import metrics as metrics_routes
from cellbox.api.body_limit import BodyLimit
from cellbox.api.head import HeadAsGet
from cellbox.api.openapi import document_api
from cellbox.api.raw_routes import RawRoutes
from cellbox.api.responses import JSON
from cellbox.api.token_check import TokenCheck
from cellbox.auth import Token
from cellbox.cluster.node import ClusterNode
from cellbox.cluster.router import ClusterRouter
from cellbox.config import Settings
from cellbox.placement import placement
from cellbox.process.sandbox_calls import AsyncSandbox
from cellbox.sandbox import Limits, Sandbox
from cellbox.sandbox.network import Network
from cellbox.sessions.registry import ContextRegistry


def open_sandbox(settings: Settings, network: str) -> Sandbox:
    """The sandbox the settings describe, probed and ready; ``network``: the mode to give."""
    limits = Limits(
        memory_bytes=settings.memory_limit_mb << 20,
        pids=settings.pids_limit,
        file_size_bytes=settings.file_size_limit_mb << 20,
        open_files=settings.open_files_limit,
    )
    return Sandbox(
        settings.state_dir,
        limits,
        network=network,
        enabled=settings.sandbox,
        disk_limit_bytes=settings.disk_limit_mb << 20,
    ).open()


def _shutdown(
    registry: ContextRegistry, cluster: ClusterNode | None
) -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
    """What a graceful shutdown runs: the drain of this node's executions and of the
    requests it forwarded, side by side; and what cuts both short."""

    async def drain() -> None:
        await asyncio.gather(registry.drain(), *([cluster.drain()] if cluster else []))

    def hurry() -> None:
        registry.hurry()
        if cluster is not None:
            cluster.hurry()

    return drain, hurry


def _wrapped(app: ASGIApp, wrap: Callable[[ASGIApp], ASGIApp]) -> ASGIApp:
    """A middleware factory for Starlette: ``wrap`` around the app."""
    return wrap(app)


def create_app(settings: Settings, token: Token, sandbox: Sandbox | None = None) -> RawRoutes:
    """The cellbox ASGI application: FastAPI, with the hot routes served past it."""
    network = Network(settings.network, privileged=os.geteuid() == 0 and settings.sandbox)
    sandbox = sandbox or open_sandbox(settings, network.mode)
    network.settle(sandbox.isolation()["network"])
    registry = ContextRegistry(settings, AsyncSandbox(sandbox), network)
    cluster = ClusterNode(settings, token.value, registry) if settings.peers else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.pin_cpu:
            await placement.start(realtime=settings.realtime_loop)
        registry.start()
        # What exists now lives as long as the server: the collector need not walk it
        # again on every request's allocations.
        gc.collect()
        gc.freeze()
        if cluster is not None:
            await cluster.start()
        try:
            yield
        finally:
            if cluster is not None:
                await cluster.close()
            await registry.close()
            placement.stop()

    app = FastAPI(
        title="cellbox",
        version=__version__,
        description="Persistent, isolated Python and TypeScript REPL contexts over HTTP.",
        lifespan=lifespan,
        default_response_class=JSON,
        # No OpenTelemetry here: FastAPI would look for a provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    def checked(inner: ASGIApp) -> ASGIApp:
        """``inner`` behind the checks every request passes, outermost first: the token
        (401 before a body is read), the cluster's routing (outside the body limit: an
        upload to another node streams through), the body limit (413 with the API's JSON
        body, where Starlette's is plain text)."""
        guarded = BodyLimit(
            inner,
            limit=settings.body_limit_bytes,
            streamed=files.UPLOAD_PATHS,  # their routes stream the body and count to the limit
            stream_limit=settings.upload_limit_mb << 20,
        )
        if cluster is not None:
            guarded = ClusterRouter(guarded, node=cluster, body_limit=settings.body_limit_bytes)
        return TokenCheck(guarded, token=token.value)

    app.add_middleware(HeadAsGet, routes=app.router.routes)
    app.add_middleware(_wrapped, wrap=checked)  # the same checks for FastAPI's routes
    document_api(app)
    errors.install(app)
    app.state.registry = registry
    app.state.drain, app.state.hurry = _shutdown(registry, cluster)
    app.state.listening = cluster.listening if cluster is not None else lambda: None
    endpoints = execute.ExecuteEndpoints(registry, settings)
    app.include_router(execute.routes(endpoints))
    app.include_router(contexts.routes(registry))
    app.include_router(info.routes(registry, settings, cluster))
    app.include_router(files.routes(registry, settings))
    app.include_router(playground.routes())
    metrics_routes.install(app, registry, settings)
    return RawRoutes(app, endpoints.posts, checked)
