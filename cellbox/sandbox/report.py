"""The isolation this host achieved, as ``GET /info`` reports it and the log announces it."""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict
from typing import Any

from cellbox.sandbox import seccomp
from cellbox.sandbox.cgroups import Cgroups
from cellbox.sandbox.launchers import Launcher
from cellbox.sandbox.mount_helper import MountHelper
from cellbox.sandbox.policy import Limits

log = logging.getLogger("cellbox.sandbox")

BANNER = "CELLBOX SANDBOX IS DEGRADED: user code is NOT fully isolated"


def isolation(
    *,
    launcher: Launcher,
    cgroups: Cgroups | None,
    helper: MountHelper | None,
    limits: Limits,
    network: str,
    enabled: bool,
    warnings: list[str],
    setup_ms: dict[str, float],
    disk: dict[str, Any],
) -> dict[str, Any]:
    """What this host allowed, with a warning for each thing it did not."""
    caps = launcher.caps
    private = launcher.private_view
    memory = cgroups.kind if cgroups is not None and cgroups.memory else "rlimit-data"
    pids = cgroups.kind if cgroups is not None and cgroups.pids else "rlimit-nproc-per-uid"
    if cgroups is not None:
        cleanup = cgroups.cleanup
    elif private:
        cleanup = "pid-namespace"
    else:
        cleanup = "process-tree"
    warnings = list(warnings)
    if launcher.mode == "uid-only":
        warnings.append(f"workers see the host filesystem (as uid {caps.uid})")
    if network == "off" and not private:
        warnings.append("network cannot be switched off without bubblewrap")
    if memory == "rlimit-data":
        warnings.append("no memory cgroup: memory limited by RLIMIT_DATA only")
    if pids == "rlimit-nproc-per-uid":
        warnings.append("no pids cgroup: RLIMIT_NPROC counts all processes of the uid")
    filtered = launcher.seccomp and seccomp.program(platform.machine()) is not None
    if launcher.seccomp and not filtered:
        warnings.append(
            f"no seccomp filter on {platform.machine()}: {', '.join(seccomp.REFUSED)} "
            "stay open to the code"
        )
    cg_full = cgroups is not None and cgroups.memory and cgroups.pids
    full = private and caps.dedicated_uid and cg_full and enabled
    return {
        "level": "full" if full else "degraded",
        "enabled": enabled,
        "mode": launcher.mode,
        "uid": caps.uid,
        "gid": caps.gid,
        "uid_mode": "dedicated" if caps.dedicated_uid else "server",
        "user_namespace": private,
        "namespaces": launcher.namespaces(network),
        "filesystem": launcher.filesystem(),
        "memory_limit": memory,
        "pids_limit": pids,
        "cleanup": cleanup,
        "network": "host" if (network == "off" and not private) else network,
        "limits": asdict(limits),
        "setup": dict(setup_ms),
        "mount_helper": helper.report() if helper is not None else {},
        "disk": disk,
        "seccomp": {"enforced": filtered, "refused": list(seccomp.REFUSED) if filtered else []},
        "warnings": warnings,
    }


def announce(info: dict[str, Any]) -> None:
    """One log line for full isolation; a loud banner with every warning otherwise."""
    if info["level"] == "full":
        log.info(
            "sandbox: full isolation (uid %s, namespaces %s, %s memory, %s pids, "
            "network %s); worker start overhead %s ms",
            info["uid"],
            ",".join(info["namespaces"]),
            info["memory_limit"],
            info["pids_limit"],
            info["network"],
            info["setup"].get("overhead_ms"),
        )
        return
    banner = "!" * 78
    lines = "\n".join(f"  - {w}" for w in info["warnings"])
    log.warning("\n%s\n%s\n%s\n%s", banner, BANNER, lines, banner)
