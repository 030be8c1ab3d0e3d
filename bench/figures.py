"""Measurements of cellbox through its HTTP API, and of the ipykernel baseline.

Every function here measures one thing and returns a JSON-ready dict; the caller
(bench.py) decides targets, pass/fail and presentation.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import statistics
import time
from dataclasses import dataclass

import httpx
import procmem
from baseline import Baseline, Kernel
from server import Api, ApiError, check_execute, primary_text
from stats import summarize_ns, summarize_rounds

SCIPY_CELL = (
    "import numpy, pandas, matplotlib.pyplot\n"
    "df = pandas.DataFrame({'a': range(100), 'b': numpy.arange(100) * 2.0})\n"
    "df.groupby(df.a % 3).b.sum().to_dict()"
)
SCIPY_EXPECTED = "{0: 3366.0, 1: 3234.0, 2: 3300.0}"


@dataclass
class Plan:
    """How many samples of what; ``quick()`` gives a smoke-check sized plan."""

    warm_rounds: int = 5
    warm_per_round: int = 200
    warm_warmup: int = 30
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


def _expect(data: dict, expected: str | None) -> None:
    if expected is not None and primary_text(data) != expected:
        raise ApiError(f"unexpected result {primary_text(data)!r}, wanted {expected!r}", 200, data)


class BaselineFailure(RuntimeError):
    """The baseline side of a measurement failed (not cellbox)."""


def _timed_kernel(kernel: Kernel, code: str, expected: str | None) -> int:
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


def warm_latency(
    api: Api | None,
    kernel: Kernel | None,
    plan: Plan,
    code: str = "1+1",
    expected: str = "2",
    language: str | None = None,
) -> dict:
    """p50 of ``code`` on one warm context (and one warm kernel), rounds interleaved.

    Interleaving the cellbox and baseline rounds spreads machine noise over both.
    """
    context_id = None
    if api is not None:
        context_id = api.execute("0", language)["context_id"]
        for _ in range(plan.warm_warmup):
            _expect(api.execute(code, context_id=context_id), expected)
    if kernel is not None:
        for _ in range(plan.warm_warmup):
            _timed_kernel(kernel, code, expected)
    ours: list[list[int]] = []
    theirs: list[list[int]] = []
    for _ in range(plan.warm_rounds):
        if api is not None:
            samples = []
            for _ in range(plan.warm_per_round):
                elapsed, data = api.timed_execute(code, context_id=context_id)
                _expect(data, expected)
                samples.append(elapsed)
            ours.append(samples)
        if kernel is not None:
            theirs.append(
                [_timed_kernel(kernel, code, expected) for _ in range(plan.warm_per_round)]
            )
    if api is not None and context_id is not None:
        api.delete(context_id)
    out: dict = {"code": code, "warmup_excluded": plan.warm_warmup}
    if ours:
        out["cellbox"] = summarize_rounds(ours)
    if theirs:
        out["baseline"] = summarize_rounds(theirs)
    return out


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
        _expect(data, expected)
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


async def _burst_once(api: Api, size: int, code: str) -> dict:
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(
        base_url=api.url, headers=api.headers, limits=limits, timeout=120.0
    ) as client:
        # Open all connections first so connection setup is not part of the burst.
        await asyncio.gather(*(client.get("/healthz") for _ in range(size)))

        async def one() -> tuple[int, httpx.Response | Exception]:
            t0 = time.perf_counter_ns()
            try:
                response = await client.post("/execute", json={"code": code})
            except httpx.HTTPError as exc:
                return time.perf_counter_ns() - t0, exc
            return time.perf_counter_ns() - t0, response

        t0 = time.perf_counter_ns()
        results = await asyncio.gather(*(one() for _ in range(size)))
        wall = time.perf_counter_ns() - t0
    answered = 0
    errors: list[str] = []
    context_ids: list[str] = []
    for _, response in results:
        if isinstance(response, Exception):
            errors.append(repr(response))
            continue
        try:
            data = check_execute(response)
        except ApiError as exc:
            errors.append(str(exc)[:300])
            continue
        answered += 1
        context_ids.append(data["context_id"])
    return {
        "wall_ns": wall,
        "answered": answered,
        "errors": errors,
        "latencies_ns": [r[0] for r in results],
        "context_ids": context_ids,
    }


def burst(api: Api, plan: Plan) -> dict:
    """``burst_size`` concurrent new contexts; wall time until all are answered."""
    walls: list[int] = []
    latencies: list[int] = []
    all_answered = True
    errors: list[str] = []
    for i in range(plan.burst_repeats):
        if i:
            time.sleep(plan.burst_pause_s)
        once = asyncio.run(_burst_once(api, plan.burst_size, plan.burst_code))
        for context_id in once["context_ids"]:
            api.delete(context_id)
        walls.append(once["wall_ns"])
        latencies.extend(once["latencies_ns"])
        if once["answered"] != plan.burst_size:
            all_answered = False
            errors.extend(once["errors"])
    out = {
        "size": plan.burst_size,
        "code": plan.burst_code,
        "repeats": len(walls),
        "pause_between_repeats_s": plan.burst_pause_s,
        "all_answered": all_answered,
        "errors": errors[:20],
        "wall": summarize_ns(walls),
        "walls_ms": [round(w / 1e6, 2) for w in walls],
        "per_request": summarize_ns(latencies),
    }
    out["value_ms"] = out["wall"]["p50_ms"]
    return out


# --- memory ---------------------------------------------------------------------------


def _pid_fields(value: object, key: str = "") -> list[int]:
    """Integers found under any key containing 'pid' anywhere in a JSON value."""
    found: list[int] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found.extend(_pid_fields(v, str(k)))
    elif isinstance(value, list):
        for v in value:
            found.extend(_pid_fields(v, key))
    elif isinstance(value, int) and not isinstance(value, bool) and "pid" in key.lower():
        found.append(value)
    return found


def _context_processes(api: Api, context_id: str) -> tuple[list[int], str]:
    """Host pids of a context's worker process(es) and how they were found."""
    info = api.get_context(context_id)
    pids = [p for p in _pid_fields(info) if os.path.exists(f"/proc/{p}")]
    if pids:
        return pids, "pid field(s) of GET /contexts/{id}"
    # The worker holds a uniquely named file open; find it through /proc/*/fd.
    marker = f"cellbox-bench-marker-{secrets.token_hex(8)}"
    api.execute(
        "import os as _bench_os, tempfile as _bench_tempfile\n"
        "try:\n"
        f"    _bench_marker = open({marker!r}, 'w')\n"
        "except OSError:\n"
        "    _bench_marker = open(_bench_os.path.join("
        f"_bench_tempfile.gettempdir(), {marker!r}), 'w')\n",
        context_id=context_id,
    )
    pids = procmem.pids_holding_file(marker)
    if pids:
        return pids, "process holding a marker file opened by the context (/proc/*/fd)"
    cwd = info.get("cwd")
    if cwd:
        pids = procmem.pids_with_cwd(cwd)
        if pids:
            return pids, "processes whose /proc/<pid>/cwd equals the context's cwd"
    raise RuntimeError("could not find the context's process (need root to read /proc?)")


def context_pss(api: Api, plan: Plan, server_pid: int | None) -> dict:
    """PSS of new contexts after the numpy/pandas/matplotlib cell, median over samples."""
    samples = []
    for i in range(plan.pss_samples):
        if i:
            time.sleep(plan.settle_s)
        data = api.execute(SCIPY_CELL)
        _expect(data, SCIPY_EXPECTED)
        context_id = data["context_id"]
        try:
            pids, method = _context_processes(api, context_id)
            time.sleep(0.5)
            memory = procmem.subtree_memory(pids, helper_stop=server_pid)
            memory["found_by"] = method
            if server_pid is not None:
                memory["server_tree_processes"] = len(procmem.tree(server_pid))
            samples.append(memory)
        finally:
            api.delete(context_id)
    values = [s["pss_kb"] / 1024 for s in samples]
    return {
        "value_mb": round(statistics.median(values), 2),
        "samples_mb": [round(v, 2) for v in values],
        "summed": "the context's worker process and all its descendants; "
        "ancestors below the server (sandbox helpers, zygote) are listed, not summed",
        "samples": samples,
    }


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
            _expect(data, str(i))
            fill.append(elapsed)
        fresh = api.execute("0", "typescript")["context_id"]
        for _ in range(plan.warm_warmup):
            _expect(api.execute("1+1", context_id=old), "2")
            _expect(api.execute("1+1", context_id=fresh), "2")
        old_ns: list[int] = []
        fresh_ns: list[int] = []
        for _ in range(plan.ts_drift_samples):
            for context_id, bucket in ((old, old_ns), (fresh, fresh_ns)):
                elapsed, data = api.timed_execute("1+1", context_id=context_id)
                _expect(data, "2")
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


# --- throughput -----------------------------------------------------------------------


async def _throughput_once(api: Api, context_ids: list[str], seconds: float) -> dict:
    size = len(context_ids)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(
        base_url=api.url, headers=api.headers, limits=limits, timeout=120.0
    ) as client:

        async def run(context_id: str, until: float | None, count: int) -> dict:
            done = 0
            errors = 0
            latencies: list[int] = []
            body = {"code": "1+1", "context_id": context_id}
            while (until is None and done + errors < count) or (
                until is not None and time.perf_counter() < until
            ):
                t0 = time.perf_counter_ns()
                response = await client.post("/execute", json=body)
                latencies.append(time.perf_counter_ns() - t0)
                try:
                    _expect(check_execute(response), "2")
                    done += 1
                except ApiError:
                    errors += 1
            return {"done": done, "errors": errors, "latencies": latencies}

        # Warm-up: every client opens its connection and runs a few cells.
        await asyncio.gather(*(run(c, None, 5) for c in context_ids))
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(run(c, t0 + seconds, 0) for c in context_ids))
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    done = sum(r["done"] for r in results)
    client_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "exec_per_s": round(done / wall, 1),
        "completed": done,
        "errors": sum(r["errors"] for r in results),
        "wall_s": round(wall, 3),
        "per_request": summarize_ns([x for r in results for x in r["latencies"]]),
        "bench_client_cpu_cores": round(client_cpu / wall, 3),
    }


def throughput(api: Api, plan: Plan, server_pid: int | None) -> dict:
    """``throughput_clients`` concurrent clients, each on its own context, ``1+1`` in a loop."""
    context_ids = [api.execute("0")["context_id"] for _ in range(plan.throughput_clients)]
    runs = []
    try:
        for i in range(plan.throughput_repeats):
            if i:
                time.sleep(plan.settle_s)
            server_pids = procmem.tree(server_pid) if server_pid else []
            ticks0 = procmem.cpu_ticks(server_pids)
            once = asyncio.run(_throughput_once(api, context_ids, plan.throughput_seconds))
            if server_pids:
                ticks1 = procmem.cpu_ticks(server_pids)
                used = sum(ticks1[p] - ticks0[p] for p in ticks1 if p in ticks0)
                hz = os.sysconf("SC_CLK_TCK")
                once["server_tree_cpu_cores"] = round(used / hz / once["wall_s"], 3)
            runs.append(once)
    finally:
        for context_id in context_ids:
            api.delete(context_id)
    return {
        "value": statistics.median(r["exec_per_s"] for r in runs),
        "clients": plan.throughput_clients,
        "seconds_per_run": plan.throughput_seconds,
        "client": "one httpx.AsyncClient, one keep-alive connection per client, "
        "in the benchmark process (its CPU use is reported: it shares the 2 cores)",
        "runs": runs,
    }


# --- baseline-only measurements --------------------------------------------------------


def baseline_cold_start(baseline: Baseline, plan: Plan) -> dict:
    """start_kernel() -> ready, and -> first cell ``1`` answered (the new-context analogue)."""
    ready: list[int] = []
    first: list[int] = []
    for _ in range(plan.baseline_cold_samples):
        kernel, elapsed = baseline.start()
        try:
            cell = _timed_kernel(kernel, "1", "1")
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
            cell = _timed_kernel(kernel, SCIPY_CELL, SCIPY_EXPECTED)
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
