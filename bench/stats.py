"""Summaries of timing samples: percentiles, means, medians of repeated rounds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_ns(samples_ns: Sequence[int]) -> dict:
    """p50/p90/p99/mean/min/max in milliseconds, plus n, for samples given in nanoseconds."""
    ms = [s / 1e6 for s in samples_ns]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 4),
        "p90_ms": round(percentile(ms, 90), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "min_ms": round(min(ms), 4),
        "max_ms": round(max(ms), 4),
    }


def summarize_rounds(rounds_ns: Sequence[Sequence[int]]) -> dict:
    """Pooled summary of all rounds, each round's p50, and the median of those p50s.

    ``value_ms`` (the figure reported) is the median of the per-round p50s: one noisy
    round on a shared 2-core machine moves it less than it moves a pooled percentile.
    """
    pooled = [s for r in rounds_ns for s in r]
    round_p50s = [round(percentile([s / 1e6 for s in r], 50), 4) for r in rounds_ns if r]
    out = summarize_ns(pooled)
    out["rounds"] = len(round_p50s)
    out["round_p50s_ms"] = round_p50s
    if round_p50s:
        out["value_ms"] = round(statistics.median(round_p50s), 4)
    return out
