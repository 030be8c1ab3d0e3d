"""Several full runs of the benchmark as one: every figure's numbers are the medians over
the runs, judged again on those medians, with each run's own value and verdict beside them.

    .venv/bin/python bench/medians.py bench/results/A.json bench/results/B.json ...

prints the table of the medians (``bench.py --runs N`` prints the same after its runs).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from table import details, table
from targets import judge, value

SIDES = ("cellbox", "baseline")
# what each run says of itself, kept per run rather than merged
OWN_VERDICT = ("value", "baseline_value", "ratio_vs_baseline", "result")


def _is_number(item: Any) -> bool:
    return isinstance(item, int | float) and not isinstance(item, bool)


def merge(items: list[Any], pick: int) -> Any:
    """One value for the same place in several runs' records.

    Numbers: their median (a count stays whole when it can). Flags: true only if true in
    every run. Objects: merged key by key (run ``pick``'s keys; one missing from another
    run keeps ``pick``'s value). Lists: every run's items, in run order (rounds,
    samples). Anything else (text): run ``pick``'s.
    """
    if all(_is_number(item) for item in items):
        middle = statistics.median(items)
        if all(isinstance(item, int) for item in items) and middle == int(middle):
            return int(middle)  # counts stay counts
        return round(middle, 4)
    if all(isinstance(item, bool) for item in items):
        return all(items)
    if all(isinstance(item, dict) for item in items):
        return {
            key: merge([item[key] for item in items], pick)
            if all(key in item for item in items)
            else own
            for key, own in items[pick].items()
        }
    if all(isinstance(item, list) for item in items):
        return [element for item in items for element in item]
    return items[pick]


def _own_verdict(rec: dict) -> dict:
    """What one run said of a figure: its value, ratio and verdict, and its tail."""
    own = {key: rec.get(key) for key in OWN_VERDICT}
    side = rec.get("cellbox") or {}
    if side.get("p50_ms") and "p99_ms" in side:
        own["p99_over_p50"] = round(side["p99_ms"] / side["p50_ms"], 2)
    return own


def median_run(sides: list[dict]) -> int:
    """Which run's side has the median value (the lower middle one of an even count)."""
    order = sorted(range(len(sides)), key=lambda i: value(sides[i]) or 0.0)
    return order[(len(order) - 1) // 2]


def combine(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """The figures of several runs (each run's ``figures``) as one set of records."""
    combined: dict[str, dict] = {}
    names = dict.fromkeys(name for run in runs for name in run)
    for name in names:
        records = [run[name] for run in runs if name in run]
        measured = [rec for rec in records if rec.get("cellbox")]
        pick = median_run([rec["cellbox"] for rec in measured]) if measured else 0
        basis = measured or records
        rec = {
            key: item
            for key, item in merge(basis, pick).items()
            if key not in OWN_VERDICT and not key.endswith(("_error", "_traceback"))
        }
        for side in SIDES:
            errors = [r[f"{side}_error"] for r in records if r.get(f"{side}_error")]
            if errors:
                rec[f"{side}_error"] = errors[0]
        rec["per_run"] = [_own_verdict(r) for r in records]
        judge(name, rec)
        combined[name] = rec
    return combined


def report(combined: dict[str, dict], runs: int) -> str:
    """The medians' table and details, as ``bench.py`` prints one run's."""
    return (
        f"Medians of {runs} full runs (each figure judged on its medians):\n\n"
        f"{table(combined)}\n\n{details(combined)}"
    )


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: medians.py RUN.json RUN.json [...]", file=sys.stderr)
        return 2
    runs = []
    for path in argv:
        try:
            runs.append(json.loads(Path(path).read_text())["figures"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"medians.py: {path} is not a benchmark result ({exc!r})", file=sys.stderr)
            return 2
    print(report(combine(runs), len(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
