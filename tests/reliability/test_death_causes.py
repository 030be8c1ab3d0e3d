"""A worker's death is told by its own cause, whatever happened to the processes it started.

The memory cgroup counts every OOM kill of the context's processes; a child the code started
that ran out of memory (the worker lived on, state kept) once made every later death of the
worker, even ``os._exit(3)``, read "killed: out of memory" and count as ``oom``.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Client

# A child that runs out of the context's memory (256 MiB in this package's server).
CHILD_OOM = (
    "import subprocess, sys\n"
    "subprocess.run([sys.executable, '-c', 'b = b\"x\" * (1 << 30)']).returncode"
)


def _deaths(client: Client) -> dict[str, float]:
    """Python worker deaths by cause, from ``GET /metrics``."""
    text = client.get("/metrics").text
    return {
        sample.labels["cause"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "cellbox_worker_deaths_total" and sample.labels["language"] == "python"
    }


def test_an_exit_after_a_child_ran_out_of_memory_is_an_exit(client: Client) -> None:
    ctx = client.context()
    client.run("x = 1", context_id=ctx)
    child = client.run(CHILD_OOM, context_id=ctx, timeout_ms=30000)
    assert child["items"][0]["text"] == "-9", child  # the child was OOM-killed ...
    assert client.run("x", context_id=ctx)["items"][0]["text"] == "1"  # ... the worker lives
    before = _deaths(client)
    body = client.run("import os; os._exit(3)", context_id=ctx)
    assert body["error"]["name"] == "ContextDied", body
    assert "exited with code 3" in body["error"]["value"], body["error"]["value"]
    assert "out of memory" not in body["error"]["value"]
    after = _deaths(client)
    assert after["crash"] - before["crash"] == 1
    assert after["oom"] == before["oom"]
    client.delete(f"/contexts/{ctx}")
