"""The server's own CPU per warm execution: what one ``1+1`` costs the server process.

Read from ``/proc/<pid>/task/*/schedstat`` (every thread of the server process; not its
workers, not the client) around many executions on one warm context, in a few rounds; the
figure is the median of the rounds.
"""

from __future__ import annotations

import statistics

from figures import Plan, execute_sampler
from procmem import cpu_per_call_us
from server import Api


def per_warm_execution(api: Api, plan: Plan, server_pid: int | None) -> dict:
    if server_pid is None:
        raise RuntimeError("needs the server's pid (a server this benchmark started)")
    context_id = api.execute("0")["context_id"]
    try:
        sample = execute_sampler(api, context_id, "1+1", "2")
        for _ in range(plan.warm_warmup):
            sample()
        rounds = [
            cpu_per_call_us(server_pid, sample, plan.warm_per_round)
            for _ in range(plan.warm_rounds)
        ]
    finally:
        api.delete(context_id)
    value = statistics.median(rounds) / 1000
    return {
        "code": "1+1",
        "per_round_us": rounds,
        "value_ms": round(value, 4),
        "what": "user+system CPU of the server process (all threads), per execution",
    }
