"""Which launcher starts workers on this host: tried best first, each with a real process.

bubblewrap, then bubblewrap in its compatibility mode (older kernels and bwrap builds), else
the fallback: the uid drop alone as root, direct otherwise. Each try starts a worker-like
unit the way every worker is started and checks it ran as the sandbox uid. What goes with
the launcher is chosen here too (the mount helper, the font cache), and every step down is
a warning that ``GET /info`` reports.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cellbox.sandbox.font_cache import FontCache
from cellbox.sandbox.launchers import BwrapLauncher, DirectLauncher, Launcher, UidLauncher
from cellbox.sandbox.launchers.bwrap import state_dir_masked
from cellbox.sandbox.mount_helper import MountHelper
from cellbox.sandbox.policy import SYSTEM_PATH, SandboxError
from cellbox.sandbox.probe import BWRAP, DIRECT, UID_ONLY, Capabilities

if TYPE_CHECKING:
    from cellbox.sandbox.sandbox import Sandbox


def joined_failure(first: str, second: str) -> str:
    """Both tries' errors, once if they are the same."""
    return first if second == first else f"{first}; {second}"


def setup_figures(sandboxed_ms: list[float], direct_ms: list[float]) -> dict[str, float]:
    """The worker start overhead ``/info`` reports, from the best of each kind of run."""
    return {
        "sandboxed_start_ms": round(min(sandboxed_ms), 1),
        "direct_start_ms": round(min(direct_ms), 1),
        "overhead_ms": round(min(sandboxed_ms) - min(direct_ms), 1),
    }


class LauncherChoice:
    """Chooses a sandbox's launcher once; keeps what goes with it."""

    def __init__(self, sandbox: Sandbox, cache: Path, warnings: list[str]) -> None:
        self._sandbox = sandbox
        self._cache = cache
        self._warnings = warnings  # the sandbox's: every step down is reported
        self._probes = 0
        self.helper: MountHelper | None = None
        self.fonts: FontCache | None = None
        self.setup_ms: dict[str, float] = {}

    def choose(self, caps: Capabilities) -> Launcher:
        """The best launcher that really starts a worker here."""
        launcher = self._best(caps)
        if isinstance(launcher, BwrapLauncher):
            if state_dir_masked(launcher.caps, self._sandbox.layout):
                self._warnings.append("state directory lies inside a runtime path; masked")
            if self.fonts is not None:
                self.fonts.start()
        return launcher

    def _best(self, caps: Capabilities) -> Launcher:
        if caps.root:
            if caps.setpriv is None:
                raise SandboxError("running as root but setpriv (util-linux) is missing")
        else:
            self._warnings.append(
                f"server is not root: workers run as the server's own uid {caps.uid}"
            )
        self._cache.mkdir(parents=True, exist_ok=True)
        self.fonts = FontCache(self._cache)
        if caps.root:
            os.chmod(self._cache, 0o755)
            self._start_helper(caps)
        fallback = UID_ONLY if caps.root else DIRECT
        if not self._sandbox.enabled:
            self._warnings.append("sandbox disabled by configuration: no namespaces, no cgroups")
            return self._fall_back(caps, fallback)
        if caps.bwrap is None:
            self._warnings.append("bubblewrap (bwrap) not found: no namespaces")
            return self._fall_back(caps, fallback)
        try:
            return self._try(dataclasses.replace(caps, launcher=BWRAP))
        except SandboxError as exc:
            failure = str(exc)
        # older kernels or bwrap builds: retry without --disable-userns and --size
        try:
            return self._try(dataclasses.replace(caps, launcher=BWRAP, bwrap_compat=True))
        except SandboxError as exc:
            failure = joined_failure(failure, str(exc))
        self._warnings.append(f"bubblewrap does not work here ({failure}): no namespaces")
        return self._fall_back(caps, fallback)

    def _fall_back(self, caps: Capabilities, kind: str) -> Launcher:
        self.fonts = None  # the font cache is only bound by bubblewrap
        return self._try(dataclasses.replace(caps, launcher=kind))

    def _start_helper(self, caps: Capabilities) -> None:
        layout = self._sandbox.layout
        anchors = [os.path.realpath(p) for p in caps.runtime_paths]
        anchors += [str(layout.contexts), str(layout.public), str(self._cache)]
        helper = MountHelper.plan(anchors, caps.uid, caps.gid)
        if helper is None:
            return
        try:
            if caps.nsenter is None:
                raise SandboxError(
                    f"{helper.covers} not reachable by uid {caps.uid} and nsenter is missing"
                )
            helper.namespace()
        except SandboxError as exc:
            self._warnings.append(f"no mount helper: {exc}")
            return
        self.helper = helper

    def _make_launcher(self, caps: Capabilities) -> Launcher:
        if caps.launcher == BWRAP:
            sandbox = self._sandbox
            args = (sandbox.layout, sandbox.limits, sandbox.network, self.fonts)
            return BwrapLauncher(caps, self.helper, *args)
        if caps.launcher == UID_ONLY:
            return UidLauncher(caps, self.helper)
        return DirectLauncher(caps, self.helper)

    def _try(self, caps: Capabilities) -> Launcher:
        """Start a real worker-like process with ``caps.launcher``; raise if it fails."""
        sandbox = self._sandbox
        launcher = self._make_launcher(caps)
        self._probes += 1
        unit = f"probe-{os.getpid()}-{self._probes}"
        workdir = sandbox.create_workdir(unit)
        check = (
            "import os; open('probe', 'w').write('x'); os.unlink('probe');"
            f"assert os.getuid() == {caps.uid}, os.getuid()"
        )
        argv = [sys.executable, "-I", "-S", "-c", check]
        error = ""
        result = None
        try:
            wrapped, env = sandbox.launch_command(
                launcher, argv, unit=unit, workdir=workdir, env={}
            )
            result = subprocess.run(
                wrapped, env=env, capture_output=True, timeout=30, start_new_session=True
            )
            error = result.stderr.decode(errors="replace").strip()
            if result.returncode == 0:
                self._measure_setup(launcher, unit, workdir)
        except (OSError, subprocess.SubprocessError, SandboxError) as exc:
            error = str(exc)
        finally:
            sandbox.release(unit)
            sandbox.remove_workdir(unit)
        if result is not None and result.returncode == 0:
            return launcher
        error = error or f"exit status {result.returncode if result else '?'}"
        if sandbox.units.cgroups is not None and "cgroup" in error:
            self._warnings.append(f"cannot place workers in cgroups: {error}")
            sandbox.units.cgroups = None
            return self._try(caps)
        if caps.launcher == DIRECT:
            raise SandboxError(f"cannot start a worker process at all: {error}")
        raise SandboxError(error)

    def _measure_setup(self, launcher: Launcher, unit: str, workdir: Path) -> None:
        """Spawn-to-exit of a trivial interpreter run, sandboxed and direct (best of 2)."""
        argv = [sys.executable, "-I", "-S", "-c", "pass"]
        sandboxed, direct = [], []
        for _ in range(2):
            wrapped, env = self._sandbox.launch_command(
                launcher, argv, unit=unit, workdir=workdir, env={}
            )
            start = time.perf_counter()
            subprocess.run(wrapped, env=env, capture_output=True, timeout=30)
            sandboxed.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            subprocess.run(argv, cwd="/", env={"PATH": SYSTEM_PATH}, capture_output=True)
            direct.append((time.perf_counter() - start) * 1000)
        self.setup_ms = setup_figures(sandboxed, direct)
