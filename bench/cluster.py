"""Forwarding overhead: warm ``1+1`` through one node, on its own context and on a peer's.

Starts two cluster nodes (``a`` and ``b``, static peers) and one standalone server. The
sides take turns in rounds (as in the warm figures), all on one keep-alive connection each:

- ``standalone``: a server without peers (no cluster router at all);
- ``local``: node ``a``, a context that ``a`` owns;
- ``forwarded``: node ``a``, a context that ``b`` owns (``a`` forwards it);
- ``owner_direct``: node ``b``, the same context, without the hop.

The figure is ``forwarded`` − ``local`` (p50, median over rounds): what the hop adds.
Latency on a busy machine is mostly waiting for a core, so the JSON also gives the CPU
time node ``a``'s server process spends per request, local and forwarded
(``cpu_per_request_us``): what the hop costs whatever else runs.
"""

from __future__ import annotations

import time

import httpx
from figures import Plan, execute_sampler, interleaved_rounds
from procmem import cpu_per_call_us
from server import CLIENTS, Server

CODE, EXPECTED = "1+1", "2"
SERVE_ARGS = ["--pool-typescript=0", "--pool-python=1"]


def _context_on(server: Server, api_key: str) -> str:
    """A context created on ``server`` itself (a forwarded request is answered where it lands)."""
    response = httpx.post(
        f"{server.url}/contexts",
        json={},
        headers={"Authorization": f"Bearer {api_key}", "X-Cellbox-Forwarded": "bench"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["id"]


def _wait_for_peer(server: Server, api_key: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = httpx.get(
            f"{server.url}/info", headers={"Authorization": f"Bearer {api_key}"}, timeout=5
        ).json()
        if any(p["reachable"] for p in (info.get("cluster") or {}).get("peers", [])):
            return
        time.sleep(0.1)
    raise RuntimeError("the cluster nodes did not see each other")


def forwarding_overhead(plan: Plan, client: str) -> dict:
    a = Server(["--node-id=a", *SERVE_ARGS])
    b = Server(["--node-id=b", *SERVE_ARGS])
    standalone = Server(SERVE_ARGS)
    for server in (b, standalone):  # one token for all
        server.token = server.api_key = a.token
        server.env["CELLBOX_API_KEY"] = a.token
    peers = f"--peers={a.url},{b.url}"
    a.command.append(peers)
    b.command.append(peers)
    servers = [a, b, standalone]
    apis = []
    try:
        for server in servers:
            server.start()
        _wait_for_peer(a, a.api_key)
        via_a = CLIENTS[client](a.url, a.api_key)
        via_b = CLIENTS[client](b.url, a.api_key)
        alone = CLIENTS[client](standalone.url, a.api_key)
        apis = [via_a, via_b, alone]
        local, remote = _context_on(a, a.api_key), _context_on(b, a.api_key)
        sides = {
            "standalone": execute_sampler(
                alone, _context_on(standalone, a.api_key), CODE, EXPECTED
            ),
            "local": execute_sampler(via_a, local, CODE, EXPECTED),
            "forwarded": execute_sampler(via_a, remote, CODE, EXPECTED),
            "owner_direct": execute_sampler(via_b, remote, CODE, EXPECTED),
        }
        summaries, errors = interleaved_rounds(sides, plan)
        if errors:
            raise RuntimeError(f"sides failed: {errors}")
        p50 = {name: summary["value_ms"] for name, summary in summaries.items()}
        count = plan.warm_rounds * plan.warm_per_round
        cpu = {name: cpu_per_call_us(a.pid, sides[name], count) for name in ("local", "forwarded")}
        return {
            "cpu_per_request_us": cpu,
            "cpu_added_us": round(cpu["forwarded"] - cpu["local"], 1),
            "value_ms": round(p50["forwarded"] - p50["local"], 4),
            "client": client,
            "side_p50s_ms": p50,
            "router_on_local_ms": round(p50["local"] - p50["standalone"], 4),
            "sides": summaries,
        }
    finally:
        for api in apis:
            api.close()
        for server in servers:
            server.stop()
            server.cleanup()
