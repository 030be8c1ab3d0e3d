"""Prometheus metrics of this node: events counted where they happen, levels read at scrape time.

Code paths call the small functions below (``execution_finished``, ``file_bytes``, ...);
they never touch prometheus-client themselves; worker deaths are read from
:mod:`cellbox.deaths`, where they are recorded once. Levels (live contexts,
warm pools, memory headroom) are not kept twice: a collector reads them from a
:class:`NodeStats` snapshot when ``/metrics`` is scraped, and cluster placement reads the
same series from each peer's ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cellbox import __version__, deaths

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LANGUAGES = ("python", "typescript")
OUTCOMES = ("ok", "error", "timeout", "interrupted", "cancelled", "died")
# deaths.py records finer causes; the series keeps the three an operator acts on
DEATH_CAUSES = {
    deaths.SIGNAL: "crash",
    deaths.EXIT: "crash",
    deaths.UNKNOWN: "crash",
    deaths.OOM: "oom",
    deaths.STUBBORN: "stubborn_timeout",
    deaths.MISBEHAVED: "crash",
}
DIRECTIONS = ("in", "out")
INSTALL_OUTCOMES = ("ok", "failed")

# Gauge names that placement reads back from a peer's /metrics.
LIVE = "cellbox_contexts_live"
MAX = "cellbox_contexts_max"
MEMORY = "cellbox_memory_available_bytes"
NODE_INFO = "cellbox_node_info"

disable_created_metrics()  # *_created series: noise for a scraper, and per-label clutter
REGISTRY = CollectorRegistry(auto_describe=True)

_executions = Counter(
    "cellbox_executions",
    "Executions finished, by language and outcome",
    ("node", "language", "outcome"),
    registry=REGISTRY,
)
_duration = Histogram(
    "cellbox_execution_duration_seconds",
    "Wall time of an execution from its start on the worker (its turn, if it was not run) "
    "to its last event",
    ("node", "language"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 600),
    registry=REGISTRY,
)
_worker_starts = Counter(
    "cellbox_worker_starts", "Worker processes started", ("node", "language"), registry=REGISTRY
)
_file_bytes = Counter(
    "cellbox_file_bytes",
    "Bytes moved through the files API (in: uploads, out: downloads)",
    ("node", "direction"),
    registry=REGISTRY,
)
_package_installs = Counter(
    "cellbox_package_installs",
    "Package installs requested at context creation, by outcome",
    ("node", "language", "outcome"),
    registry=REGISTRY,
)

_node = "local"


def set_node(node_id: str) -> None:
    """Label every series with ``node_id``; create each labelled series at zero."""
    global _node
    _node = node_id
    _finished.clear()
    for language in LANGUAGES:
        _duration.labels(_node, language)
        _worker_starts.labels(_node, language)
        for outcome in OUTCOMES:
            _executions.labels(_node, language, outcome)
        for outcome in INSTALL_OUTCOMES:
            _package_installs.labels(_node, language, outcome)
    for direction in DIRECTIONS:
        _file_bytes.labels(_node, direction)


# The labelled series of the hot path, found once (``labels()`` costs more than ``inc()``).
_finished: dict[tuple[str, str], tuple[Callable[[], None], Callable[[float], None]]] = {}


def execution_finished(language: str, outcome: str, seconds: float) -> None:
    series = _finished.get((language, outcome))
    if series is None:
        series = _finished[(language, outcome)] = (
            _executions.labels(_node, language, outcome).inc,
            _duration.labels(_node, language).observe,
        )
    count, observe = series
    count()
    observe(seconds)


def outcome_of(failed: bool, stop_reason: str | None, error_name: str | None) -> str:
    """The outcome label of an execution that ended."""
    if not failed:
        return "ok"
    if error_name == "Disconnected":  # its client left before its turn: never run
        return "cancelled"
    if stop_reason == "timeout":
        return "timeout"
    if stop_reason in ("interrupt", "disconnect"):
        return "interrupted"
    if stop_reason in ("deleted", "restarted", "shutdown"):
        return "cancelled"
    if error_name == "ContextDied":
        return "died"
    return "error"


def worker_started(language: str) -> None:
    _worker_starts.labels(_node, language).inc()


def file_bytes(direction: str, count: int) -> None:
    """``direction``: ``in`` (upload) or ``out`` (download)."""
    _file_bytes.labels(_node, direction).inc(count)


def package_installed(language: str, ok: bool) -> None:
    _package_installs.labels(_node, language, "ok" if ok else "failed").inc()


@dataclass(frozen=True)
class NodeStats:
    """This node's levels at one moment."""

    live: dict[str, int]  # by language
    max_contexts: int
    memory_available_bytes: int
    pool_ready: dict[str, int] = field(default_factory=dict)
    pool_target: dict[str, int] = field(default_factory=dict)


class _Levels(Collector):
    def __init__(self, snapshot: Callable[[], NodeStats]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats = self.snapshot()
        info = GaugeMetricFamily(
            NODE_INFO, "This node's id and version", labels=["node", "version"]
        )
        info.add_metric([_node, __version__], 1)
        yield info
        yield _by_language(LIVE, "Live contexts, by language", stats.live)
        yield _single(MAX, "Live contexts allowed on this node", stats.max_contexts)
        yield _single(
            MEMORY, "Memory this node can still give (host or cgroup)", stats.memory_available_bytes
        )
        yield _by_language(
            "cellbox_warm_pool_ready", "Warm workers ready, by language", stats.pool_ready
        )
        yield _by_language(
            "cellbox_warm_pool_target", "Warm workers kept ready, by language", stats.pool_target
        )
        yield _worker_deaths()


def _worker_deaths() -> CounterMetricFamily:
    """The deaths ``cellbox.deaths`` recorded, by language and cause."""
    family = CounterMetricFamily(
        "cellbox_worker_deaths",
        "Worker processes lost, by cause (crash, oom, stubborn_timeout)",
        labels=["node", "language", "cause"],
    )
    totals = dict.fromkeys(
        ((language, cause) for language in LANGUAGES for cause in DEATH_CAUSES.values()), 0
    )
    for (language, cause), count in deaths.counts.items():
        key = (language, DEATH_CAUSES.get(cause, "crash"))
        totals[key] = totals.get(key, 0) + count
    for (language, cause), count in totals.items():
        family.add_metric([_node, language, cause], count)
    return family


def _single(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["node"])
    family.add_metric([_node], value)
    return family


def _by_language(name: str, documentation: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["node", "language"])
    for language in LANGUAGES:
        family.add_metric([_node, language], values.get(language, 0))
    return family


_levels: _Levels | None = None


def watch(snapshot: Callable[[], NodeStats]) -> None:
    """Read the levels from ``snapshot`` at each scrape (replaces an earlier one)."""
    global _levels
    if _levels is not None:
        REGISTRY.unregister(_levels)
    _levels = _Levels(snapshot)
    REGISTRY.register(_levels)


def exposition() -> bytes:
    """Every series, in the Prometheus text format."""
    return generate_latest(REGISTRY)
