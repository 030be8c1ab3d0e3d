"""How a worker process is launched: unprivileged uid, namespaces, cgroups, rlimits.

``probe`` (host → frozen capabilities) · ``policy`` (the isolation rules, pure) · ``cgroups``
(v1/v2 behind one interface) · ``launchers/`` (bubblewrap, uid-only, direct, zygote) ·
``workdirs`` · ``cleanup`` · ``mount_helper`` · ``font_cache`` · ``report`` (``GET /info``) ·
``sandbox`` (the one object the server holds).
"""

from cellbox.sandbox.policy import ForkSpec, Limits, SandboxError
from cellbox.sandbox.sandbox import Sandbox

__all__ = ["ForkSpec", "Limits", "Sandbox", "SandboxError"]
