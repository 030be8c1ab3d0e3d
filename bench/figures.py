"""Measurements of cellbox through its HTTP API, and of the ipykernel baseline.

Every function here measures one thing and returns a JSON-ready dict; the caller
(bench.py) decides targets, pass/fail and presentation.
"""

from __future__ import annotations

import functools
import os
import resource
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import procmem
from baseline import Baseline, Kernel
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
            samples = attempt(name, plan.warm_per_round)
            if samples is not None:
                rounds[name].append(samples)
    summaries = {name: summarize_rounds(r) for name, r in rounds.items() if r and name in live}
    return summaries, errors


def execute_sampler(api: Api, context_id: str, code: str, expected: str) -> Sampler:
    def sample() -> int:
        elapsed, data = api.timed_execute(code, context_id=context_id)
        _expect(data, expected)
        return elapsed

    return sample


def kernel_sampler(kernel: Kernel, code: str, expected: str) -> Sampler:
    return lambda: _timed_kernel(kernel, code, expected)


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
        return interleaved_rounds(sides, plan)
    finally:
        for api, context_id in contexts:
            try:
                api.delete(context_id)
            except Exception:  # noqa: BLE001 - cleanup must not hide the measurement
                pass


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


def _connected_clients(make_client: ClientFactory, count: int) -> list[Api]:
    """``count`` clients, each with its connection already open (``GET /healthz``)."""
    clients = [make_client() for _ in range(count)]
    for client in clients:
        client.timed_get("/healthz")
    return clients


def _burst_once(make_client: ClientFactory, size: int, code: str) -> dict:
    """``size`` threads, released together, each sending one new-context execute."""
    clients = _connected_clients(make_client, size)
    gate = threading.Barrier(size + 1)
    outcomes: list[tuple[int, int, dict | Exception]] = [(0, 0, RuntimeError("no answer"))] * size

    def one(index: int) -> None:
        gate.wait()
        t0 = time.perf_counter_ns()
        try:
            _, data = clients[index].timed_execute(code)
            outcome: dict | Exception = data
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none raised
            outcome = exc
        end = time.perf_counter_ns()
        outcomes[index] = (end, end - t0, outcome)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(size)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter_ns()
    for thread in threads:
        thread.join()
    context_ids = [o[2]["context_id"] for o in outcomes if isinstance(o[2], dict)]
    errors = [
        f"{type(o[2]).__name__}: {o[2]}"[:300] for o in outcomes if isinstance(o[2], Exception)
    ]
    for context_id in context_ids:
        clients[0].delete(context_id)
    for client in clients:
        client.close()
    return {
        "wall_ns": max(o[0] for o in outcomes) - start,
        "answered": len(context_ids),
        "errors": errors,
        "latencies_ns": [o[1] for o in outcomes],
        "kind": clients[0].kind,
    }


def burst(make_client: ClientFactory, plan: Plan) -> dict:
    """``burst_size`` concurrent new contexts; wall time until all are answered."""
    walls: list[int] = []
    latencies: list[int] = []
    all_answered = True
    errors: list[str] = []
    kind = "?"
    for i in range(plan.burst_repeats):
        if i:
            time.sleep(plan.burst_pause_s)
        once = _burst_once(make_client, plan.burst_size, plan.burst_code)
        kind = once["kind"]
        walls.append(once["wall_ns"])
        latencies.extend(once["latencies_ns"])
        if once["answered"] != plan.burst_size:
            all_answered = False
            errors.extend(once["errors"])
    out = {
        "size": plan.burst_size,
        "code": plan.burst_code,
        "client": f"{kind}: one thread and one keep-alive connection per request, "
        "all released together",
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


def _throughput_once(clients: list[Api], context_ids: list[str], seconds: float) -> dict:
    """One thread per client, each running ``1+1`` on its own context until time is up."""
    gate = threading.Barrier(len(clients) + 1)
    results: list[dict] = [{}] * len(clients)
    until = [0.0]

    def run(index: int) -> None:
        client, context_id = clients[index], context_ids[index]
        done = errors = 0
        latencies: list[int] = []
        gate.wait()
        while time.perf_counter() < until[0]:
            try:
                elapsed, data = client.timed_execute("1+1", context_id=context_id)
                _expect(data, "2")
                latencies.append(elapsed)
                done += 1
            except Exception:  # noqa: BLE001 - counted, the load goes on
                errors += 1
        results[index] = {"done": done, "errors": errors, "latencies": latencies}

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    until[0] = t0 + seconds
    gate.wait()
    for thread in threads:
        thread.join()
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


def throughput(make_client: ClientFactory, plan: Plan, server_pid: int | None) -> dict:
    """``throughput_clients`` concurrent clients, each on its own context, ``1+1`` in a loop."""
    clients = _connected_clients(make_client, plan.throughput_clients)
    context_ids = [client.execute("0")["context_id"] for client in clients]
    runs = []
    try:
        for i in range(plan.throughput_repeats):
            time.sleep(plan.settle_s if i else 0)
            for client, context_id in zip(clients, context_ids, strict=True):
                for _ in range(3):
                    _expect(client.execute("1+1", context_id=context_id), "2")
            server_pids = procmem.tree(server_pid) if server_pid else []
            ticks0 = procmem.cpu_ticks(server_pids)
            once = _throughput_once(clients, context_ids, plan.throughput_seconds)
            if server_pids:
                ticks1 = procmem.cpu_ticks(server_pids)
                used = sum(ticks1[p] - ticks0[p] for p in ticks1 if p in ticks0)
                hz = os.sysconf("SC_CLK_TCK")
                once["server_tree_cpu_cores"] = round(used / hz / once["wall_s"], 3)
            runs.append(once)
    finally:
        for context_id in context_ids:
            clients[0].delete(context_id)
        for client in clients:
            client.close()
    return {
        "value": statistics.median(r["exec_per_s"] for r in runs),
        "clients": plan.throughput_clients,
        "client": f"{clients[0].kind}, one thread and one keep-alive connection per client, "
        "in the benchmark process (its CPU use is reported: it shares the machine's cores)",
        "seconds_per_run": plan.throughput_seconds,
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
