"""The PSS of a context after the data-stack cell: its processes found, their memory summed."""

from __future__ import annotations

import os
import secrets
import statistics
import time

import procmem
from figures import SCIPY_CELL, SCIPY_EXPECTED, Plan, expect_answer
from server import Api


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
        expect_answer(data, SCIPY_EXPECTED)
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
