"""``GET /healthz`` (no token) and ``GET /info``: version, languages, limits, isolation."""

from __future__ import annotations

from fastapi import APIRouter, Response

from cellbox import __version__
from cellbox.api.models import Health
from cellbox.api.openapi import ERRORS
from cellbox.api.responses import JSON
from cellbox.config import Settings
from cellbox.runtimes import LANGUAGE_NAMES, resolve
from cellbox.sessions.registry import ContextRegistry


def routes(registry: ContextRegistry, settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=Health, summary="Liveness (no auth)")
    async def healthz() -> Response:
        return JSON({"status": "ok"})

    @router.get(
        "/info",
        responses={401: ERRORS[401]},
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
                    "upload_limit_bytes": settings.upload_limit_mb << 20,
                    "idle_timeout_s": settings.idle_timeout_s,
                    "interrupt_grace_s": settings.interrupt_grace_s,
                },
                "isolation": registry.sandbox.isolation(),
                "network": registry.network.describe(),
            }
        )

    return router
