"""What network isolation costs a new context: p50 by policy, and against `--network host`.

One sample is ``POST /contexts`` (with the policy) plus ``POST /execute`` ``1`` on it; the
``DELETE`` and a pause (so the warm pool refills) stay outside the timing. The policies
are sampled in interleaved order on the benchmarked server (default ``public``); the same
samples on a second server started with ``--network host`` (no namespace, no rules: the
pre-isolation behaviour) give the cost of the isolation itself, and the policies asked for
on that server (``under_host``: spawned with a namespace of their own, never warm) what a
context pays there for asking for less.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from figures import Plan
from server import Api, ApiError, Server
from stats import summarize_ns

POLICIES: dict[str, object] = {
    "public": "public",
    "off": "off",
    "allowlist": {"allow": ["pypi.org", "*.pythonhosted.org"]},
}


def _sample(api: Api, network: object) -> int:
    body: dict = {"language": "python"}
    if network is not None:
        body["network"] = network
    created, status, raw = api._request("POST", "/contexts", json.dumps(body).encode())
    if status != 201:
        raise ApiError(f"POST /contexts -> {status}", status, raw[:500])
    context_id = json.loads(raw)["id"]
    try:
        ran, data = api.timed_execute("1", context_id=context_id)
        if data.get("error") is not None:
            raise ApiError(f"the first cell failed: {data['error']}")
    finally:
        api.delete(context_id)
    return created + ran


def _sampled(api: Api, plan: Plan, policies: dict[str, object]) -> dict[str, dict]:
    timings: dict[str, list[int]] = {name: [] for name in policies}
    for i in range(plan.new_warmup + plan.new_samples):
        for name, network in policies.items():
            elapsed = _sample(api, network)
            if i >= plan.new_warmup:
                timings[name].append(elapsed)
            time.sleep(plan.pause_s)
    return {name: summarize_ns(samples) for name, samples in timings.items()}


def figure(
    api: Api, plan: Plan, client: Callable[[str, str], Api], server_args: list[str] | None
) -> dict:
    """The figure; ``server_args`` (None: the server was not started here) for the host run."""
    out: dict = {"policies": _sampled(api, plan, POLICIES)}
    out["value_ms"] = out["policies"]["public"].get("p50_ms")
    if server_args is None:
        out["host"] = "skipped: the benchmarked server was not started by the bench"
        return out
    host = Server([*server_args, "--network=host"])
    try:
        host.start()
        host_api = client(host.url, host.api_key)
        try:
            under_host = _sampled(host_api, plan, {"host": None, **POLICIES})
            out["host"] = under_host.pop("host")
            out["under_host"] = under_host
        finally:
            host_api.close()
    finally:
        host.stop()
        host.cleanup()
    if out["value_ms"] is not None and out["host"].get("p50_ms") is not None:
        out["public_cost_ms"] = round(out["value_ms"] - out["host"]["p50_ms"], 3)
    return out
