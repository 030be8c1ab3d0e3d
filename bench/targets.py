"""The figures the benchmark measures: each one's title, its target, and the verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    title: str
    target: str  # as the table shows it
    # the verdict from (cellbox's value, how many times better than the baseline, the
    # record); None: reported, not judged
    passes: Callable[[float, float | None, dict], bool | None]


def _steady(rec: dict) -> bool:
    """p99 within twice the p50 (pooled over all rounds)."""
    side = rec["cellbox"]
    return side["p99_ms"] <= 2 * side["p50_ms"]


def _at_most(limit: float) -> Callable[[float, float | None, dict], bool]:
    return lambda ours, ratio, rec: ours <= limit


FIGURES: dict[str, Figure] = {
    "warm_py": Figure(
        "warm Python `1+1` via HTTP, p50",
        "≥ 10× faster than ipykernel, p99 ≤ 2× p50",
        lambda ours, ratio, rec: None if ratio is None else ratio >= 10 and _steady(rec),
    ),
    "new_py": Figure("new Python context, `1`, p50", "≤ 15 ms (aim 10)", _at_most(15)),
    "burst": Figure(
        "20 concurrent new contexts, all answered",
        "≤ 1.5 s",
        lambda ours, ratio, rec: ours <= 1500 and rec["cellbox"]["all_answered"],
    ),
    "new_scipy": Figure(
        "new context, numpy/pandas/matplotlib first cell, p50", "≤ 60 ms", _at_most(60)
    ),
    "pss": Figure(
        "PSS of a context after numpy/pandas/matplotlib", "≤ 30 MB (aim 25)", _at_most(30)
    ),
    "warm_ts": Figure("warm TypeScript `1+1` via HTTP, p50", "≤ 0.7 ms", _at_most(0.7)),
    "server_cpu": Figure(
        "server CPU per warm execution (server process only)", "≤ 0.25 ms", _at_most(0.25)
    ),
    "ts_history": Figure(
        "TypeScript p50 after 500 cells / fresh context", "≤ 1.25", _at_most(1.25)
    ),
    "new_ts": Figure("new TypeScript context, `1`, p50", "≤ 50 ms", _at_most(50)),
    "async_first": Figure(
        "`/execute/async` first event for `print(1)`, p50", "≤ 1 ms", _at_most(1)
    ),
    "throughput": Figure(
        "throughput, 16 clients on 16 contexts, `1+1`",
        "≥ 2,000 exec/s on 2 cores",
        lambda ours, ratio, rec: ours >= 2000,
    ),
    "files": Figure(
        "500 MB file upload / download, server RSS growth", "≤ a few tens of MB", _at_most(50)
    ),
    "pkg_install": Figure(
        "`%pip install` of a wheel seen before, new context, p50", "≤ 1 s", _at_most(1000)
    ),
    "new_py_network": Figure(
        "new Python context, create + `1` (two requests), public p50; cost vs --network host",
        "public within 2 ms of host",
        lambda ours, ratio, rec: rec["cellbox"].get("public_cost_ms", 99.0) <= 2,
    ),
    "forwarding": Figure(
        "cluster: warm `1+1` forwarded by a peer, p50 added", "≤ 0.5 ms", _at_most(0.5)
    ),
}
BASELINE_FIGURES = ["warm_py", "new_py", "new_scipy", "pss", "pkg_install"]


def value(side: dict | None) -> float | None:
    if not side:
        return None
    for key in ("value_ms", "value_mb", "value"):
        if side.get(key) is not None:
            return side[key]
    return None


def judge(name: str, rec: dict) -> None:
    """Fill ``value``, ``baseline_value``, ``ratio`` and ``result`` of one record."""
    ours = value(rec.get("cellbox"))
    theirs = value(rec.get("baseline"))
    rec["value"] = ours
    rec["baseline_value"] = theirs
    ratio = None
    if ours and theirs:
        ratio = round(theirs / ours, 2)  # how many times faster / smaller cellbox is
    rec["ratio_vs_baseline"] = ratio
    if ours is None:
        rec["result"] = "ERROR" if rec.get("cellbox_error") else "n/a"
        return
    passed = FIGURES[name].passes(ours, ratio, rec)
    rec["result"] = {True: "PASS", False: "FAIL", None: "report"}[passed]
    if name == "warm_py" and ratio is None:
        rec["result"] = "n/a (no baseline)"
