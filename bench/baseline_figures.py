"""Figures of the baseline alone: ipykernel's cold start, and its data-stack first cell with PSS."""

from __future__ import annotations

import os
import statistics
import time

import procmem
from baseline import Baseline
from figures import SCIPY_CELL, SCIPY_EXPECTED, Plan, timed_kernel
from stats import summarize_ns


def baseline_cold_start(baseline: Baseline, plan: Plan) -> dict:
    """start_kernel() -> ready, and -> first cell ``1`` answered (the new-context analogue)."""
    ready: list[int] = []
    first: list[int] = []
    for _ in range(plan.baseline_cold_samples):
        kernel, elapsed = baseline.start()
        try:
            cell = timed_kernel(kernel, "1", "1")
        finally:
            kernel.stop()
        ready.append(elapsed)
        first.append(elapsed + cell)
    out = {"start_to_ready": summarize_ns(ready), "start_to_first_result": summarize_ns(first)}
    out["value_ms"] = out["start_to_first_result"]["p50_ms"]
    return out


def baseline_scipy(baseline: Baseline, plan: Plan) -> dict:
    """The numpy/pandas/matplotlib cell as first cell of fresh kernels; PSS afterwards."""
    cells: list[int] = []
    totals: list[int] = []
    memory = []
    for _ in range(plan.baseline_scipy_samples):
        kernel, started = baseline.start()
        try:
            cell = timed_kernel(kernel, SCIPY_CELL, SCIPY_EXPECTED)
            time.sleep(0.5)
            memory.append(procmem.subtree_memory([kernel.pid], helper_stop=os.getpid()))
        finally:
            kernel.stop()
        cells.append(cell)
        totals.append(started + cell)
    pss = [m["pss_kb"] / 1024 for m in memory]
    out = {
        "first_cell_on_ready_kernel": summarize_ns(cells),
        "kernel_start_plus_first_cell": summarize_ns(totals),
        "pss": {
            "value_mb": round(statistics.median(pss), 2),
            "samples_mb": [round(v, 2) for v in pss],
            "summed": "the ipykernel process and its descendants",
            "samples": memory,
        },
    }
    out["value_ms"] = out["first_cell_on_ready_kernel"]["p50_ms"]
    return out
