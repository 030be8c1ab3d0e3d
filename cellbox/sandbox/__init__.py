"""How a worker process is launched: unprivileged uid, namespaces, cgroups, rlimits.

``probe`` (host → frozen capabilities) · ``policy`` (the isolation rules, pure) · ``cgroups``
(v1/v2 behind one interface) · ``launchers/`` (bubblewrap, uid-only, direct, zygote) ·
``launcher_choice`` (which launcher works here) · ``units`` (a unit's set-up, release, OOM
record, leftovers) · ``workdirs`` · ``cleanup`` · ``mount_helper`` · ``font_cache`` ·
``report`` (``GET /info``) · ``sandbox`` (the one object the server holds).

The names below load on first use: the zygote imports ``policy`` alone, and what it imports
before forking is in every context's memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cellbox.sandbox.policy import ForkSpec, Limits, SandboxError
    from cellbox.sandbox.sandbox import Sandbox

_WHERE = {
    "ForkSpec": "cellbox.sandbox.policy",
    "Limits": "cellbox.sandbox.policy",
    "SandboxError": "cellbox.sandbox.policy",
    "Sandbox": "cellbox.sandbox.sandbox",
}

__all__ = ["ForkSpec", "Limits", "Sandbox", "SandboxError"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cellbox.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
