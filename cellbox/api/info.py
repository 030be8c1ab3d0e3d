"""``GET /healthz`` (no token) and ``GET /info``: version, languages, limits, isolation."""

from __future__ import annotations

from fastapi import APIRouter, Response

from cellbox import __version__
from cellbox.api.models import Health
from cellbox.api.responses import JSON
from cellbox.cluster.node import ClusterNode
from cellbox.config import Settings
from cellbox.runtimes import LANGUAGE_NAMES, resolve
from cellbox.sessions.registry import ContextRegistry


def routes(
    registry: ContextRegistry, settings: Settings, cluster: ClusterNode | None = None
) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/healthz",
        response_model=Health,
        responses={
            503: {
                "model": Health,
                "description": 'Not ready: {"status": "starting"} or {"status": "shutting down"}',
            }
        },
        summary="Liveness; with ?ready=true readiness (warm pools filled, not shutting down)",
    )
    async def healthz(ready: bool = False) -> Response:
        if ready:
            # a node that refuses new work leaves its Service's endpoints and its peers' DNS
            if registry.closing:
                return JSON({"status": "shutting down"}, status_code=503)
            if not all(pool.warmed for pool in registry.pools.values()):
                return JSON({"status": "starting"}, status_code=503)
        return JSON({"status": "ok"})

    @router.get(
        "/info",
        summary="Version, languages, limits and the isolation this host achieved",
    )
    async def info() -> Response:
        return JSON(
            {
                "version": __version__,
                "node": settings.node_id,
                "cluster": cluster.describe() if cluster is not None else None,
                "languages": {alias: resolve(alias).name for alias in LANGUAGE_NAMES},
                "contexts": {"live": len(registry.list()), "max": settings.max_contexts},
                "pools": {name: pool.size for name, pool in registry.pools.items()},
                "limits": {
                    "default_timeout_ms": settings.default_timeout_ms,
                    "output_cap_bytes": settings.output_cap_bytes,
                    "items_cap_bytes": settings.items_cap_bytes,
                    "body_limit_bytes": settings.body_limit_bytes,
                    "upload_limit_bytes": settings.upload_limit_mb << 20,
                    "idle_timeout_s": settings.idle_timeout_s,
                    "interrupt_grace_s": settings.interrupt_grace_s,
                },
                "isolation": registry.sandbox.isolation(),
                "network": registry.network.describe(),
            }
        )

    return router
