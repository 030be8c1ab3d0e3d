"""``GET /metrics``: this node's series in the Prometheus text format (behind the token)."""

from __future__ import annotations

from fastapi import FastAPI, Response

from cellbox import metrics
from cellbox.cluster.capacity import node_stats
from cellbox.config import Settings
from cellbox.sessions.registry import ContextRegistry


def install(app: FastAPI, registry: ContextRegistry, settings: Settings) -> None:
    metrics.set_node(settings.node_id)
    metrics.watch(lambda: node_stats(registry, settings))

    @app.get(
        "/metrics",
        responses={200: {"content": {metrics.CONTENT_TYPE: {}}}},
        summary="Prometheus metrics of this node",
    )
    async def get_metrics() -> Response:
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
