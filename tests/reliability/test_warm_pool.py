"""A warm worker that dies while it waits in the pool is replaced at once, not at the next take."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from tests.conftest import Client, Server
from tests.reliability.conftest import descendants
from tests.security.conftest import alive, cmdline, cwd_of, wait_until
from tests.test_metrics import scrape, value


def pool_level(client: Client, language: str) -> tuple[float, float]:
    """(ready, target) of the language's warm pool, as /metrics reports them."""
    node = client.get("/info").json()["node"]
    samples = scrape(client)
    labels = {"node": node, "language": language}
    return (
        value(samples, "cellbox_warm_pool_ready", **labels),
        value(samples, "cellbox_warm_pool_target", **labels),
    )


def work_root(client: Client, language: str) -> str:
    """The directory that holds the work directory of every context and warm worker."""
    context_id = client.context(language)
    root = os.path.dirname(client.get(f"/contexts/{context_id}").json()["cwd"])
    assert client.delete(f"/contexts/{context_id}").status_code == 204
    return root


def warm_workspaces(server: Server, client: Client, language: str) -> dict[str, list[int]]:
    """The work directories of the server's warm workers of ``language``, with their pids,
    once its pool is full (taking a context to learn where they are made it refill)."""
    root = work_root(client, language)
    assert wait_until(lambda: full(client, language), timeout=30), pool_level(client, language)
    taken = {item["cwd"] for item in client.get("/contexts").json()["items"]}
    marker = b"main.mjs" if language == "typescript" else b"cellbox.workers"
    assert server.process is not None
    found: dict[str, list[int]] = {}
    for pid in descendants(server.process.pid):
        cwd = cwd_of(pid)
        if cwd and os.path.dirname(cwd) == root and cwd not in taken:
            if marker in cmdline(pid):
                found.setdefault(cwd, []).append(pid)
    return found


def full(client: Client, language: str) -> bool:
    ready, target = pool_level(client, language)
    return ready == target >= 1


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_a_dead_warm_worker_is_replaced(server: Server, client: Client, language: str):
    before = warm_workspaces(server, client, language)
    victim, pids = next(iter(before.items()))
    for pid in pids:  # the worker and its sandbox's helper processes
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10)

    def replaced() -> bool:
        return full(client, language) and not os.path.exists(victim)

    # Nothing takes from the pool meanwhile: only the death itself can bring it back to full.
    assert wait_until(replaced, timeout=30), (pool_level(client, language), victim)
    assert victim not in warm_workspaces(server, client, language)
    result = client.run("1 + 1", language=language)
    assert result["items"][0]["text"] == "2" and result["error"] is None
