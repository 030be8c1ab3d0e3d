"""Package install figures: a wheel some context installed before, in a new context.

cellbox side: one context installs the package (untimed) and the server puts its wheel in
the trusted cache; then each sample is a fresh context running ``%pip install`` of it and
importing it, timed around the one ``POST /execute``. Baseline, in the same run: plain
``pip install --target`` of the same package into a fresh directory (pip's own cache as
this host has it), timed around the process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time

from server import Api
from stats import summarize_ns

PACKAGE = "tabulate"
MODULE = "tabulate"
INSTALL_CELL = f"%pip install -q {PACKAGE}\nimport {MODULE}\n{MODULE}.__name__"
CACHE_WAIT_S = 60.0
SAMPLES = 15
QUICK_SAMPLES = 5


def _new_context(api: Api) -> str:
    return api.execute("1")["context_id"]


def _wait_for_cached_wheel(api: Api, context_id: str) -> None:
    probe = (
        "import os\n"
        f"any(n.startswith('{MODULE}-') for n in os.listdir(os.environ['CONTEXT_WHEEL_CACHE']))"
    )
    deadline = time.monotonic() + CACHE_WAIT_S
    while time.monotonic() < deadline:
        if api.execute(probe, context_id=context_id)["items"][0]["text"] == "True":
            return
        time.sleep(0.5)
    raise RuntimeError(f"the server did not cache the {PACKAGE} wheel in {CACHE_WAIT_S:.0f} s")


def install_seen_wheel(api: Api, quick: bool, pause_s: float) -> dict:
    """p50 of installing (and importing) a wheel seen before, in a new context."""
    seed = _new_context(api)
    try:
        api.execute(INSTALL_CELL, context_id=seed)
        _wait_for_cached_wheel(api, seed)
    finally:
        api.delete(seed)
    samples = []
    for _ in range(QUICK_SAMPLES if quick else SAMPLES):
        context_id = _new_context(api)
        try:
            elapsed, data = api.timed_execute(INSTALL_CELL, context_id=context_id)
            if data.get("error") or data["items"][0].get("text") != repr(MODULE):
                raise RuntimeError(f"install failed: {data}")
            samples.append(elapsed)
        finally:
            api.delete(context_id)
        time.sleep(pause_s)
    summary = summarize_ns(samples)
    return {"package": PACKAGE, "code": INSTALL_CELL, **summary, "value_ms": summary["p50_ms"]}


def pip_into_fresh_directory(quick: bool) -> dict:
    """p50 of plain ``pip install --target <fresh dir>`` of the same package."""
    samples = []
    argv = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for _ in range(QUICK_SAMPLES if quick else SAMPLES):
        target = tempfile.mkdtemp(prefix="cellbox-bench-pip-")
        try:
            start = time.perf_counter_ns()
            subprocess.run([*argv, "--target", target, PACKAGE], check=True, capture_output=True)
            samples.append(time.perf_counter_ns() - start)
        finally:
            shutil.rmtree(target, ignore_errors=True)
    summary = summarize_ns(samples)
    command = "pip install --target <fresh dir>"
    return {"package": PACKAGE, "command": command, **summary, "value_ms": summary["p50_ms"]}
