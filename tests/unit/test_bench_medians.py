"""bench/medians.py: several benchmark runs as one, each figure judged on its medians."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.append(str(BENCH))  # after everything else: its modules shadow nothing

import medians  # noqa: E402
from targets import judge  # noqa: E402


def _warm_py(p50: float, p99: float, baseline: float) -> dict:
    rec = {
        "title": "warm Python `1+1` via HTTP, p50",
        "target": "≥ 10× faster than ipykernel, p99 ≤ 2× p50",
        "cellbox": {"value_ms": p50, "p50_ms": p50, "p99_ms": p99, "n": 1000, "rounds": [p50]},
        "baseline": {"value_ms": baseline, "p50_ms": baseline, "p99_ms": baseline * 1.2},
        "after_idle": {"pause_ms": 200, "cellbox": {"p50_ms": 1.7}},
    }
    judge("warm_py", rec)
    return rec


def test_numbers_take_the_median_and_counts_stay_whole() -> None:
    assert medians.merge([3.0, 1.0, 2.0], pick=0) == 2.0
    assert medians.merge([1000, 1000], pick=0) == 1000
    assert isinstance(medians.merge([1000, 1000], pick=0), int)
    assert medians.merge([1, 2], pick=0) == 1.5


def test_flags_lists_text_and_objects() -> None:
    assert medians.merge([True, True], pick=0) is True
    assert medians.merge([True, False], pick=0) is False
    assert medians.merge([[1, 2], [3]], pick=1) == [1, 2, 3]
    assert medians.merge(["a", "b", "c"], pick=2) == "c"
    merged = medians.merge([{"x": 1.0, "only": "a"}, {"x": 3.0}], pick=0)
    assert merged == {"x": 2.0, "only": "a"}
    assert medians.merge([{"x": 1.0}, {"x": 3.0, "only": "b"}], pick=0) == {"x": 2.0}


def test_the_median_run_is_the_lower_middle_one() -> None:
    sides = [{"value_ms": 0.5}, {"value_ms": 0.3}, {"value_ms": 0.4}]
    assert medians.median_run(sides) == 2
    assert medians.median_run(sides[:2]) == 1


def test_a_figure_is_judged_on_its_medians_with_each_run_kept() -> None:
    runs = [
        {"warm_py": _warm_py(0.33, 0.72, 3.50)},  # its tail fails
        {"warm_py": _warm_py(0.34, 0.60, 3.51)},
        {"warm_py": _warm_py(0.33, 0.58, 3.35)},
    ]
    assert [r["warm_py"]["result"] for r in runs] == ["FAIL", "PASS", "PASS"]
    rec = medians.combine(runs)["warm_py"]
    assert rec["cellbox"]["p50_ms"] == 0.33
    assert rec["cellbox"]["p99_ms"] == 0.60
    assert rec["baseline"]["value_ms"] == 3.50
    assert rec["result"] == "PASS"
    assert rec["cellbox"]["rounds"] == [0.33, 0.34, 0.33]
    assert rec["after_idle"] == {"pause_ms": 200, "cellbox": {"p50_ms": 1.7}}
    assert [run["result"] for run in rec["per_run"]] == ["FAIL", "PASS", "PASS"]
    assert rec["per_run"][0]["p99_over_p50"] == 2.18


def test_medians_that_miss_the_target_fail() -> None:
    runs = [{"warm_py": _warm_py(0.33, 0.72, 3.50)}, {"warm_py": _warm_py(0.34, 0.75, 3.51)}]
    assert medians.combine(runs)["warm_py"]["result"] == "FAIL"


def test_a_run_whose_figure_failed_to_measure_is_left_out_of_its_medians() -> None:
    broken = {
        "title": "warm TypeScript `1+1` via HTTP, p50",
        "target": "≤ 0.7 ms",
        "cellbox_error": "RuntimeError: no node",
    }
    judge("warm_ts", broken)
    good = {
        "title": broken["title"],
        "target": broken["target"],
        "cellbox": {"value_ms": 0.42, "p50_ms": 0.42},
    }
    judge("warm_ts", good)
    rec = medians.combine([{"warm_ts": broken}, {"warm_ts": good}])["warm_ts"]
    assert rec["cellbox"]["value_ms"] == 0.42
    assert rec["cellbox_error"] == "RuntimeError: no node"
    assert [run["result"] for run in rec["per_run"]] == ["ERROR", "PASS"]
