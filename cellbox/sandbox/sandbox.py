"""The sandbox: starts workers isolated from the server, the host and each other.

One instance per server and state directory. Constructing it does nothing; :meth:`open`
reads the host (:mod:`.probe`), prepares the state directory (:mod:`.workdirs`) and the
cgroups (:mod:`.cgroups`), cleans what a previous server left, and tries the launchers
(:mod:`.launchers`) best first with a real process: bubblewrap, else the uid drop alone,
else direct. The one that works is used for every worker. Anything missing (not root, no
bwrap, no cgroups) degrades to what is possible, says so in a loud warning and in
:meth:`isolation`.

``command`` wraps a worker's argv for ``asyncio.create_subprocess_exec(*argv, env=env,
pass_fds=fds, start_new_session=True)``; ``release`` kills everything the unit started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cellbox import procfs
from cellbox.packages import layout as package_layout
from cellbox.sandbox import cgroups as cgroup_trees
from cellbox.sandbox import cleanup, policy, report
from cellbox.sandbox.cgroups import Cgroups
from cellbox.sandbox.font_cache import FontCache
from cellbox.sandbox.launchers import (
    BwrapLauncher,
    DirectLauncher,
    Launcher,
    UidLauncher,
    UnitSetup,
    ZygoteLauncher,
)
from cellbox.sandbox.launchers.bwrap import state_dir_masked
from cellbox.sandbox.mount_helper import MountHelper
from cellbox.sandbox.policy import SYSTEM_PATH, ForkSpec, Limits, SandboxError, check_unit
from cellbox.sandbox.probe import BWRAP, DIRECT, UID_ONLY, Capabilities, read_host
from cellbox.sandbox.quota import DiskQuota
from cellbox.sandbox.workdirs import StateLayout

log = logging.getLogger("cellbox.sandbox")


class Sandbox:
    """Starts and releases units: the processes of one worker, isolated as one."""

    def __init__(
        self,
        state_dir: Path,
        limits: Limits,
        network: str,
        enabled: bool = True,
        *,
        uid: int | None = None,
        cgroup_parent: str = "cellbox",
        extra_ro_paths: Iterable[str | Path] = (),
        cache_dir: Path | None = None,
        disk_limit_bytes: int = 2 << 30,
    ) -> None:
        self.limits = limits
        self.network = network  # off | public | host, as cellbox.sandbox.network settled it
        self.enabled = enabled
        self.layout = StateLayout(state_dir)
        self.state_dir = self.layout.state_dir
        self._uid_wanted = uid
        self._cgroup_parent = cgroup_parent
        self._extra = [os.path.abspath(p) for p in extra_ro_paths]
        self._cache = Path(
            os.path.abspath(cache_dir or os.path.expanduser("~/.cache/cellbox"))
        ).joinpath(f"py{sys.version_info.major}{sys.version_info.minor}")
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self._oom: dict[str, bool] = {}
        self._units: set[str] = set()
        self._lingering: set[str] = set()  # released units whose cgroups outlived the kill
        self._probes = 0
        self._setup_ms: dict[str, float] = {}
        self._helper: MountHelper | None = None
        self._fonts: FontCache | None = None
        self._cgroups: Cgroups | None = None
        self._lock_fd = -1
        self._owner = False  # holds the state directory's owner lock
        self.caps: Capabilities | None = None
        self._launcher: Launcher | None = None
        self._zygote: ZygoteLauncher | None = None
        self.quota = DiskQuota(disk_limit_bytes)
        self.wheelhouse: Path | None = None  # trusted wheels, read-only in every context

    # ------------------------------------------------------------------ set-up

    def open(self) -> Sandbox:
        """Read the host, prepare the state directory and cgroups, choose the launcher."""
        if os.geteuid() == 0:  # contexts run as another uid: they can read it, never write it
            self._cache.mkdir(parents=True, exist_ok=True)
            self.wheelhouse = package_layout.make_wheelhouse(self._cache)
            self._extra.append(str(self.wheelhouse))
        caps = read_host(self._uid_wanted, self._extra)
        self.caps = caps
        self.layout.make(root=caps.root, user=caps.user, uid=caps.uid, gid=caps.gid)
        if self.enabled and caps.root:
            instance = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
            try:
                self._cgroups = cgroup_trees.detect(f"{self._cgroup_parent}/{instance}")
            except OSError as exc:
                log.warning("cgroups unusable: %s", exc)
            if self._cgroups is None:
                self._warnings.append("no usable cgroup hierarchy")
        self._lock_fd = os.open(
            self.layout.run / "owner.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another live server uses this state directory: its units are not stale.
            self._warnings.append(
                "another running cellbox server uses this state directory; "
                "skipped the clean-up of stale units"
            )
        else:
            self._owner = True
            self._clean_stale()
        self.quota.setup(self.layout.contexts, self.layout.own / "contexts.img", self._owner)
        if not self.quota.enforced:
            self._warnings.append(f"disk quota per context not enforced: {self.quota.reason}")
        self._launcher = self._choose_launcher(caps)
        self.caps = self._launcher.caps
        if isinstance(self._launcher, BwrapLauncher):
            if state_dir_masked(self.caps, self.layout):
                self._warnings.append("state directory lies inside a runtime path; masked")
            if self._fonts is not None:
                self._fonts.start()
            self._zygote = ZygoteLauncher(self._launcher)
        report.announce(self.isolation())
        return self

    def _clean_stale(self) -> None:
        """Kill and remove what a previous server with this state directory left behind."""
        if self._cgroups is not None:
            self._cgroups.prune_siblings()
            for unit in self._cgroups.units():
                log.warning("removing stale sandbox unit %s", unit)
                self._cgroups.kill(unit)
                self._cgroups.remove(unit)
        for entry in os.scandir(self.layout.run):
            if entry.name.endswith(".pid"):
                cleanup.kill_pidfile(Path(entry.path), entry.name[:-4], tagged=True)
        for path in self.layout.stale_workdirs():
            log.warning("removing stale work directory %s", path)
            self.layout.remove_workdir(path.name)

    def _choose_launcher(self, caps: Capabilities) -> Launcher:
        """The best launcher that really starts a worker here."""
        if caps.root:
            if caps.setpriv is None:
                raise SandboxError("running as root but setpriv (util-linux) is missing")
        else:
            self._warnings.append(
                f"server is not root: workers run as the server's own uid {caps.uid}"
            )
        self._cache.mkdir(parents=True, exist_ok=True)
        self._fonts = FontCache(self._cache)
        if caps.root:
            os.chmod(self._cache, 0o755)
            self._start_helper(caps)
        fallback = UID_ONLY if caps.root else DIRECT
        if not self.enabled:
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
            if str(exc) != failure:
                failure = f"{failure}; {exc}"
        self._warnings.append(f"bubblewrap does not work here ({failure}): no namespaces")
        return self._fall_back(caps, fallback)

    def _fall_back(self, caps: Capabilities, kind: str) -> Launcher:
        self._fonts = None  # the font cache is only bound by bubblewrap
        return self._try(dataclasses.replace(caps, launcher=kind))

    def _start_helper(self, caps: Capabilities) -> None:
        anchors = [os.path.realpath(p) for p in caps.runtime_paths]
        anchors += [str(self.layout.contexts), str(self.layout.public), str(self._cache)]
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
        self._helper = helper

    def _make_launcher(self, caps: Capabilities) -> Launcher:
        if caps.launcher == BWRAP:
            args = (self.layout, self.limits, self.network, self._fonts)
            return BwrapLauncher(caps, self._helper, *args)
        if caps.launcher == UID_ONLY:
            return UidLauncher(caps, self._helper)
        return DirectLauncher(caps, self._helper)

    def _try(self, caps: Capabilities) -> Launcher:
        """Start a real worker-like process with ``caps.launcher``; raise if it fails."""
        launcher = self._make_launcher(caps)
        self._probes += 1
        unit = f"probe-{os.getpid()}-{self._probes}"
        workdir = self.create_workdir(unit)
        check = (
            "import os; open('probe', 'w').write('x'); os.unlink('probe');"
            f"assert os.getuid() == {caps.uid}, os.getuid()"
        )
        argv = [sys.executable, "-I", "-S", "-c", check]
        error = ""
        result = None
        try:
            wrapped, env = self._command(launcher, argv, unit, workdir, {})
            result = subprocess.run(
                wrapped, env=env, capture_output=True, timeout=30, start_new_session=True
            )
            error = result.stderr.decode(errors="replace").strip()
            if result.returncode == 0:
                self._measure_setup(launcher, unit, workdir)
        except (OSError, subprocess.SubprocessError, SandboxError) as exc:
            error = str(exc)
        finally:
            self.release(unit)
            self.remove_workdir(unit)
        if result is not None and result.returncode == 0:
            return launcher
        error = error or f"exit status {result.returncode if result else '?'}"
        if self._cgroups is not None and "cgroup" in error:
            self._warnings.append(f"cannot place workers in cgroups: {error}")
            self._cgroups = None
            return self._try(caps)
        if caps.launcher == DIRECT:
            raise SandboxError(f"cannot start a worker process at all: {error}")
        raise SandboxError(error)

    def _measure_setup(self, launcher: Launcher, unit: str, workdir: Path) -> None:
        """Spawn-to-exit of a trivial interpreter run, sandboxed and direct (best of 2)."""
        argv = [sys.executable, "-I", "-S", "-c", "pass"]
        sandboxed, direct = [], []
        for _ in range(2):
            wrapped, env = self._command(launcher, argv, unit, workdir, {})
            start = time.perf_counter()
            subprocess.run(wrapped, env=env, capture_output=True, timeout=30)
            sandboxed.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            subprocess.run(argv, cwd="/", env={"PATH": SYSTEM_PATH}, capture_output=True)
            direct.append((time.perf_counter() - start) * 1000)
        self._setup_ms = {
            "sandboxed_start_ms": round(min(sandboxed), 1),
            "direct_start_ms": round(min(direct), 1),
            "overhead_ms": round(min(sandboxed) - min(direct), 1),
        }

    # ------------------------------------------------------------------ public API

    @property
    def launcher(self) -> Launcher:
        assert self._launcher is not None, "Sandbox.open() first"
        return self._launcher

    @property
    def wraps_exit_status(self) -> bool:
        """True when the worker's death by signal N shows as exit status 128+N (bwrap)."""
        return self.launcher.wraps_exit_status

    def isolation(self) -> dict[str, Any]:
        """What this host allowed; what ``GET /info`` reports."""
        return report.isolation(
            launcher=self.launcher,
            cgroups=self._cgroups,
            helper=self._helper,
            limits=self.limits,
            network=self.network,
            enabled=self.enabled,
            warnings=self._warnings,
            setup_ms=self._setup_ms,
            disk=self.quota.report(),
        )

    def create_workdir(self, unit: str) -> Path:
        """A fresh private work directory for a context, owned by the sandbox uid, 0700."""
        assert self.caps is not None
        return self.layout.create_workdir(unit, self.caps.uid, self.caps.gid, self.quota.create_dir)

    @property
    def context_ids(self) -> tuple[int, int]:
        """The uid and gid every context's code runs as (and its file work is done as)."""
        assert self.caps is not None
        return self.caps.uid, self.caps.gid

    def remove_workdir(self, unit: str) -> None:
        """Delete a context's work directory (never follows links the user made)."""
        self.layout.remove_workdir(unit)

    def command(
        self,
        argv: list[str],
        *,
        unit: str,
        workdir: Path,
        env: dict[str, str],
        own_network: bool | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """Wrap ``argv`` so it runs sandboxed as ``unit``; returns (argv, environment).

        Creates the unit's cgroups (a stale unit of the same name is killed first). Spawn
        the result with ``pass_fds`` set to the worker's own fds, ``start_new_session=True``
        and a closed-by-default fd set; ``cwd`` does not matter. Inside, the working
        directory is ``workdir`` at its own absolute path. ``own_network``: root makes the
        unit a network namespace of its own (None: under ``--network public`` only).
        """
        return self._command(self.launcher, argv, unit, workdir, env, own_network)

    def _command(
        self,
        launcher: Launcher,
        argv: list[str],
        unit: str,
        workdir: Path,
        env: dict[str, str],
        own_network: bool | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        check_unit(unit)
        if not argv:
            raise ValueError("empty argv")
        workdir = self.layout.checked_workdir(workdir)
        full_env = self._environment(launcher, workdir, unit)
        full_env.update(package_layout.environment(workdir, full_env["PATH"], self.wheelhouse))
        full_env.update(policy.checked_env(env))
        setup = self._unit_setup(launcher, unit, workdir, own_network)
        return launcher.command(argv, setup=setup, workdir=workdir, env=full_env)

    @property
    def supports_zygote(self) -> bool:
        """Can workers be forked by a zygote (see ``zygote_command``) at full isolation?"""
        cg = self._cgroups
        return (
            self._zygote is not None
            and self.isolation()["level"] == "full"
            and self.launcher.caps.root
            and cg is not None
            and cg.version == 1  # v2 would refuse the move across the zygote's cgroup ns
            and cg.freezer
        )

    def zygote_command(
        self, argv: list[str], *, unit: str, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """Like ``command`` but for a zygote that forks sandboxed workers itself.

        Each child confines itself with a ``fork_spec`` (see ``cellbox.workers.zygote.confine``).
        Needs ``supports_zygote``.
        """
        check_unit(unit)
        if not self.supports_zygote or self._zygote is None:
            raise SandboxError("this host's sandbox cannot run a zygote")
        contexts = self.layout.contexts
        full_env = self._environment(self._zygote, contexts, unit)
        full_env["HOME"] = policy.PRIVATE_TMP
        full_env.update(policy.checked_env(env))
        setup = self._unit_setup(self._zygote, unit, contexts)
        return self._zygote.command(argv, setup=setup, workdir=contexts, env=full_env)

    def fork_spec(self, unit: str, workdir: Path, env: dict[str, str]) -> ForkSpec:
        """Create ``unit``'s cgroups; what a zygote child needs to become its worker."""
        check_unit(unit)
        if self._zygote is None:
            raise SandboxError("this host's sandbox cannot run a zygote")
        workdir = self.layout.checked_workdir(workdir)
        full_env = self._environment(self._zygote, workdir, unit)
        full_env.update(package_layout.environment(workdir, full_env["PATH"], self.wheelhouse))
        full_env.update(policy.checked_env(env))
        return self._zygote.fork_spec(self._prepare_unit(unit), full_env, self._rlimits())

    def release(self, unit: str) -> None:
        """Kill every process of ``unit`` and remove its cgroups. Idempotent, never raises."""
        try:
            check_unit(unit)
        except ValueError:
            return
        oom = False
        gone: bool | None = None
        try:
            if self._cgroups is not None:
                oom = self._cgroups.oom_kills(unit) > 0
                gone = self._cgroups.kill(unit)
                self._cgroups.remove(unit)
                self._remove_lingering(also=unit)
        except Exception:
            log.exception("releasing cgroups of %s", unit)
        try:
            pidfile = self.layout.pidfile(unit)
            if gone:
                with contextlib.suppress(FileNotFoundError):
                    pidfile.unlink()
            else:
                tagged = self._launcher is None or not self._launcher.private_view
                cleanup.kill_pidfile(pidfile, unit, tagged=tagged)
        except Exception:
            log.exception("killing processes of %s", unit)
        with self._lock:
            self._oom[unit] = self._oom.get(unit, False) or oom
            self._units.discard(unit)
            if len(self._oom) > 4096:
                for stale in list(self._oom)[:2048]:
                    del self._oom[stale]

    def oom_killed(self, unit: str) -> bool:
        """Did the memory cgroup OOM-kill a process of ``unit`` (also after ``release``)?"""
        with self._lock:
            if self._oom.get(unit):
                return True
        if self._cgroups is None:
            return False
        try:
            check_unit(unit)
        except ValueError:
            return False
        return self._cgroups.oom_kills(unit) > 0

    def _remove_lingering(self, also: str) -> None:
        """Retry the cgroups of units whose processes took longer to die than a release
        waited (a fork bomb on a loaded host); ``also``: the unit just released."""
        assert self._cgroups is not None
        with self._lock:
            self._lingering.add(also)
            units = set(self._lingering)
        for unit in units:
            if unit != also and self._cgroups.kill(unit, timeout=0.2):
                self._cgroups.remove(unit)
            if not any(path.exists() for path in self._cgroups.dirs(unit).values()):
                with self._lock:
                    self._lingering.discard(unit)

    def close(self) -> None:
        """Kill every unit this sandbox started and stop its helpers (server shutdown)."""
        with self._lock:
            units = set(self._units)
        if self._cgroups is not None and self._owner:
            units |= self._cgroups.units()
        for unit in units:
            self.release(unit)
        if self._helper is not None:
            self._helper.close()
        if self._fonts is not None:
            self._fonts.close()
        if self._cgroups is not None:
            self._cgroups.remove_parents()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self._lock_fd = -1
        self.quota.close()

    # ------------------------------------------------------------------ internals

    def _prepare_unit(self, unit: str) -> list[Path]:
        """Register ``unit`` and make its cgroups afresh; the files to write "0" to."""
        with self._lock:
            self._units.add(unit)
            self._oom.pop(unit, None)
        if self._cgroups is None:
            return []
        if any(path.exists() for path in self._cgroups.dirs(unit).values()):
            self._cgroups.kill(unit)
            self._cgroups.remove(unit)
        try:
            return self._cgroups.create(unit, self.limits)
        except OSError as exc:
            self._cgroups.remove(unit)
            raise SandboxError(f"cannot create cgroups for {unit}: {exc}") from exc

    def _unit_setup(
        self, launcher: Launcher, unit: str, workdir: Path, own_network: bool | None = None
    ) -> UnitSetup:
        if own_network is None:
            own_network = self.network == "public"
        return UnitSetup(
            pidfile=self.layout.pidfile(unit),
            cgroup_files=self._prepare_unit(unit),
            rlimits=self._rlimits(),
            chdir=workdir if launcher.chdir_in_setup() else None,
            net_namespace=own_network and launcher.caps.root and launcher is not self._zygote,
        )

    def _environment(self, launcher: Launcher, workdir: Path, unit: str) -> dict[str, str]:
        caps = launcher.caps
        tmp = launcher.tmp_dir(workdir)
        if not launcher.private_view:
            os.makedirs(tmp, mode=0o700, exist_ok=True)
            if caps.uid != os.geteuid():
                os.chown(tmp, caps.uid, caps.gid)
        return policy.environment(
            user=caps.user,
            home=workdir,
            tmp=tmp,
            bin_dirs=list(caps.bin_dirs),
            # lets release() find detached processes when no cgroup or pid namespace can
            unit_tag=None if launcher.private_view else unit,
        )

    def _rlimits(self) -> dict[str, int]:
        assert self.caps is not None
        cg = self._cgroups
        memory = self.enabled and cg is not None and cg.memory
        pids = self.enabled and cg is not None and cg.pids
        threads = 0 if pids else procfs.threads_of_uid(self.caps.uid)
        wanted = policy.rlimits(
            self.limits, memory_cgroup=memory, pids_cgroup=pids, uid_threads=threads
        )
        return policy.within_hard_limits(wanted)
