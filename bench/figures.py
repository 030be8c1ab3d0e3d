"""Measurements of one client against cellbox (and the ipykernel baseline): warm latency,
new contexts, the first SSE event, TypeScript history; the plan and helpers they share.

Every function here measures one thing and returns a JSON-ready dict; the caller
(bench.py) decides targets, pass/fail and presentation. Figures of many clients are in
concurrency.py, a context's memory in context_memory.py, the baseline alone in
baseline_figures.py.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from baseline import Kernel
from server import Api, ApiError, StdlibApi, primary_text
from stats import summarize_ns, summarize_rounds

SCIPY_CELL = (
    "import numpy, pandas, matplotlib.pyplot\n"
    "df = pandas.DataFrame({'a': range(100), 'b': numpy.arange(100) * 2.0})\n"
    "df.groupby(df.a % 3).b.sum().to_dict()"
)
SCIPY_EXPECTED = "{0: 3366.0, 1: 3234.0, 2: 3300.0}"

ClientFactory = Callable[[], Api]


@dataclass
class Plan:
    """How many samples of what; ``quick()`` gives a smoke-check sized plan."""

    warm_rounds: int = 5
    warm_per_round: int = 200
    warm_warmup: int = 30
    # Untimed samples at the start of every round: a side's round starts on a machine the
    # other sides just used (caches, the CPUs' state), which the next few samples of any
    # side pay for; the pause after idle is measured on its own (``idle_pause_s``).
    round_warmup: int = 10
    idle_samples: int = 25
    idle_pause_s: float = 0.2
    new_samples: int = 60
    new_warmup: int = 3
    scipy_samples: int = 30
    pause_s: float = 0.15
    burst_size: int = 20
    burst_repeats: int = 5
    burst_pause_s: float = 3.0
    burst_code: str = "1"
    pss_samples: int = 3
    ts_cells: int = 500
    ts_drift_repeats: int = 3
    ts_drift_samples: int = 200
    throughput_clients: int = 16
    throughput_seconds: float = 5.0
    throughput_repeats: int = 3
    baseline_cold_samples: int = 5
    baseline_scipy_samples: int = 4
    figure_budget_s: float = 60.0
    settle_s: float = 1.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            warm_rounds=2,
            warm_per_round=50,
            warm_warmup=10,
            round_warmup=3,
            idle_samples=5,
            new_samples=10,
            new_warmup=2,
            scipy_samples=5,
            burst_repeats=2,
            pss_samples=1,
            ts_drift_repeats=1,
            ts_drift_samples=50,
            throughput_seconds=2.0,
            throughput_repeats=1,
            baseline_cold_samples=2,
            baseline_scipy_samples=2,
            figure_budget_s=20.0,
            settle_s=0.5,
        )


def expect_answer(data: dict, expected: str | None) -> None:
    if expected is not None and primary_text(data) != expected:
        raise ApiError(f"unexpected result {primary_text(data)!r}, wanted {expected!r}", 200, data)


class BaselineFailure(RuntimeError):
    """The baseline side of a measurement failed (not cellbox)."""


def timed_kernel(kernel: Kernel, code: str, expected: str | None) -> int:
    t0 = time.perf_counter_ns()
    try:
        result = kernel.execute(code)
    except Exception as exc:
        raise BaselineFailure(f"ipykernel: {exc}") from exc
    elapsed = time.perf_counter_ns() - t0
    if expected is not None and result != expected:
        raise BaselineFailure(f"ipykernel answered {result!r}, wanted {expected!r}")
    return elapsed


# --- warm latency ---------------------------------------------------------------------


Sampler = Callable[[], int]


def interleaved_rounds(sides: dict[str, Sampler], plan: Plan) -> tuple[dict, dict]:
    """Run every side's sampler in rounds, the sides taking turns within each round.

    Taking turns spreads machine noise over all sides alike. A side whose sampler
    raises is dropped from then on; returns (summaries, errors) keyed by side.
    """
    live = dict(sides)
    errors: dict[str, str] = {}
    rounds: dict[str, list[list[int]]] = {name: [] for name in sides}

    def attempt(name: str, count: int) -> list[int] | None:
        try:
            return [live[name]() for _ in range(count)]
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
            del live[name]
            return None

    for name in list(live):
        attempt(name, plan.warm_warmup)
    for _ in range(plan.warm_rounds):
        for name in list(live):
            if attempt(name, plan.round_warmup) is None:
                continue
            samples = attempt(name, plan.warm_per_round)
            if samples is not None:
                rounds[name].append(samples)
    summaries = {name: summarize_rounds(r) for name, r in rounds.items() if r and name in live}
    return summaries, errors


def execute_sampler(api: Api, context_id: str, code: str, expected: str) -> Sampler:
    def sample() -> int:
        elapsed, data = api.timed_execute(code, context_id=context_id)
        expect_answer(data, expected)
        return elapsed

    return sample


def kernel_sampler(kernel: Kernel, code: str, expected: str) -> Sampler:
    return lambda: timed_kernel(kernel, code, expected)


def warm_latency(
    apis: list[Api],
    kernel: Kernel | None,
    plan: Plan,
    language: str | None = None,
    code: str = "1+1",
    expected: str = "2",
) -> tuple[dict, dict]:
    """p50 of ``code`` on one warm context per client (and one warm kernel).

    Sides: ``cellbox`` (the first client), ``cellbox_via_<kind>`` for the other
    clients, ``http_floor_<kind>`` (``GET /healthz`` on the same connection: what the
    client and HTTP alone cost) and ``baseline`` when a kernel is given.
    """
    sides: dict[str, Sampler] = {}
    contexts: list[tuple[Api, str]] = []
    for i, api in enumerate(apis):
        context_id = api.execute("0", language)["context_id"]
        contexts.append((api, context_id))
        name = "cellbox" if i == 0 else f"cellbox_via_{api.kind}"
        sides[name] = execute_sampler(api, context_id, code, expected)
    for api in apis:
        sides[f"http_floor_{api.kind}"] = functools.partial(api.timed_get, "/healthz")
    if kernel is not None:
        sides["baseline"] = kernel_sampler(kernel, code, expected)
    try:
        summaries, errors = interleaved_rounds(sides, plan)
        idle = {name: sides[name] for name in ("cellbox", "baseline") if name in summaries}
        if idle:
            summaries["after_idle"] = after_idle(idle, plan)
        return summaries, errors
    finally:
        for api, context_id in contexts:
            try:
                api.delete(context_id)
            except Exception:  # noqa: BLE001 - cleanup must not hide the measurement
                pass


def after_idle(sides: dict[str, Sampler], plan: Plan) -> dict:
    """Each side's first sample after ``plan.idle_pause_s`` of idleness, the sides taking
    turns: what a client that pauses between requests (an agent thinking) sees."""
    samples: dict[str, list[int]] = {name: [] for name in sides}
    for _ in range(plan.idle_samples):
        for name, sample in sides.items():
            time.sleep(plan.idle_pause_s)
            samples[name].append(sample())
    return {
        "pause_ms": round(plan.idle_pause_s * 1000),
        **{name: summarize_ns(values) for name, values in samples.items()},
    }


def async_first_event(api: StdlibApi, plan: Plan) -> dict:
    """p50 from sending ``POST /execute/async`` with ``print(1)`` to its first event."""
    context_id = api.execute("0")["context_id"]

    def sample() -> int:
        elapsed, events = api.timed_first_event("print(1)", context_id)
        if events[0] != {"type": "stdout", "data": "1"}:
            raise ApiError(f"first event {events[0]!r}, wanted stdout '1'")
        return elapsed

    try:
        summaries, errors = interleaved_rounds({"cellbox": sample}, plan)
    finally:
        api.delete(context_id)
    if errors:
        raise ApiError(errors["cellbox"])
    return {"code": "print(1)", **summaries["cellbox"]}


# --- new contexts ---------------------------------------------------------------------


def new_context_latency(
    api: Api,
    plan: Plan,
    code: str,
    expected: str | None,
    language: str | None = None,
    samples: int | None = None,
) -> dict:
    """``POST /execute`` without ``context_id``; DELETE and a pause outside the timing."""
    wanted = samples if samples is not None else plan.new_samples
    deadline = time.monotonic() + plan.figure_budget_s
    timings: list[int] = []
    warmup: list[int] = []
    stopped_early = False
    for i in range(plan.new_warmup + wanted):
        elapsed, data = api.timed_execute(code, language)
        expect_answer(data, expected)
        if data.get("execution_count") not in (None, 1):
            raise ApiError(f"new context has execution_count {data.get('execution_count')}")
        api.delete(data["context_id"])
        (warmup if i < plan.new_warmup else timings).append(elapsed)
        time.sleep(plan.pause_s)
        if len(timings) >= 5 and time.monotonic() > deadline:
            stopped_early = True
            break
    out = summarize_ns(timings)
    out["value_ms"] = out.get("p50_ms")
    out["pause_between_samples_ms"] = round(plan.pause_s * 1000)
    out["warmup_ms"] = [round(w / 1e6, 3) for w in warmup]
    out["stopped_at_time_budget"] = stopped_early
    return out


# --- TypeScript history ---------------------------------------------------------------


def ts_history(api: Api, plan: Plan) -> dict:
    """p50 of ``1+1`` after ``ts_cells`` earlier cells vs on a fresh context.

    The two contexts are sampled alternately so noise hits both equally.
    """
    repeats = []
    for _ in range(plan.ts_drift_repeats):
        old = api.execute("0", "typescript")["context_id"]
        fill: list[int] = []
        for i in range(plan.ts_cells):
            elapsed, data = api.timed_execute(f"let v{i} = {i}; v{i}", context_id=old)
            expect_answer(data, str(i))
            fill.append(elapsed)
        fresh = api.execute("0", "typescript")["context_id"]
        for _ in range(plan.warm_warmup):
            expect_answer(api.execute("1+1", context_id=old), "2")
            expect_answer(api.execute("1+1", context_id=fresh), "2")
        old_ns: list[int] = []
        fresh_ns: list[int] = []
        for _ in range(plan.ts_drift_samples):
            for context_id, bucket in ((old, old_ns), (fresh, fresh_ns)):
                elapsed, data = api.timed_execute("1+1", context_id=context_id)
                expect_answer(data, "2")
                bucket.append(elapsed)
        api.delete(old)
        api.delete(fresh)
        old_s = summarize_ns(old_ns)
        fresh_s = summarize_ns(fresh_ns)
        tenth = max(1, len(fill) // 10)
        repeats.append(
            {
                "after_history": old_s,
                "fresh": fresh_s,
                "ratio": round(old_s["p50_ms"] / fresh_s["p50_ms"], 4),
                "history_cells": len(fill),
                "history_cells_first_tenth": summarize_ns(fill[:tenth]),
                "history_cells_last_tenth": summarize_ns(fill[-tenth:]),
            }
        )
    return {"value": statistics.median(r["ratio"] for r in repeats), "repeats": repeats}
