"""GET /metrics: Prometheus text with every series the contract names, read by the real parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.security.conftest import wait_until

SERIES = {
    "cellbox_node_info": "gauge",
    "cellbox_contexts_live": "gauge",
    "cellbox_contexts_max": "gauge",
    "cellbox_memory_available_bytes": "gauge",
    "cellbox_executions": "counter",
    "cellbox_execution_duration_seconds": "histogram",
    "cellbox_warm_pool_ready": "gauge",
    "cellbox_warm_pool_target": "gauge",
    "cellbox_worker_starts": "counter",
    "cellbox_worker_deaths": "counter",
    "cellbox_file_bytes": "counter",
    "cellbox_package_installs": "counter",
}


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name, kind in SERIES.items():
        assert name in families, name
        assert families[name].type == kind, name
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families.values()
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_need_the_token(server):
    assert httpx.get(server.url + "/metrics").status_code == 401


def test_every_series_is_labelled_by_node(client):
    node = client.get("/info").json()["node"]
    samples = scrape(client)
    assert all(dict(labels).get("node") == node for _, labels in samples)
    info = [dict(labels) for name, labels in samples if name == "cellbox_node_info"]
    assert info == [{"node": node, "version": client.get("/info").json()["version"]}]
    for cause in ("crash", "oom", "stubborn_timeout"):
        value(samples, "cellbox_worker_deaths_total", node=node, language="python", cause=cause)
    for direction in ("in", "out"):
        value(samples, "cellbox_file_bytes_total", node=node, direction=direction)


def test_counts_follow_what_happens(client):
    node = client.get("/info").json()["node"]
    before = scrape(client)
    context = client.context("python")
    client.run("1 + 1", context_id=context)
    client.run("1 / 0", context_id=context)
    client.run("import time; time.sleep(5)", context_id=context, timeout_ms=200)
    client.post(f"/contexts/{context}/restart")
    after = scrape(client)
    listed = client.get("/contexts").json()["items"]
    client.delete(f"/contexts/{context}")

    def grew(name: str, samples: dict | None = None, **labels: str) -> float:
        """Since ``before``: up to ``after``, or up to ``samples``."""
        labels["node"] = node
        return value(samples or after, name, **labels) - value(before, name, **labels)

    assert grew("cellbox_executions_total", language="python", outcome="ok") == 1
    assert grew("cellbox_executions_total", language="python", outcome="error") == 1
    assert grew("cellbox_executions_total", language="python", outcome="timeout") == 1
    assert grew("cellbox_execution_duration_seconds_count", language="python") == 3
    assert grew("cellbox_execution_duration_seconds_sum", language="python") >= 0.2
    # the pool replaces the worker the context took (TOP_UP_DELAY_S after the take)
    starts = "cellbox_worker_starts_total"
    assert wait_until(lambda: grew(starts, scrape(client), language="python") >= 1)
    live = value(after, "cellbox_contexts_live", node=node, language="python")
    assert live == len([c for c in listed if c["language"] == "python"]) >= 1
    assert (
        value(after, "cellbox_contexts_max", node=node)
        == client.get("/info").json()["contexts"]["max"]
    )
    assert value(after, "cellbox_memory_available_bytes", node=node) > 0
    pools = client.get("/info").json()["pools"]
    assert value(after, "cellbox_warm_pool_target", node=node, language="python") == pools["python"]
