"""Figures of many clients at once: a burst of new contexts, and warm throughput."""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time

import procmem
from figures import ClientFactory, Plan, expect_answer
from server import Api
from stats import summarize_ns


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
                expect_answer(data, "2")
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
                    expect_answer(client.execute("1+1", context_id=context_id), "2")
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
