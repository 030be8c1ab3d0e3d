"""What every launcher does, and the root part of the chain they share.

A launcher turns a worker's argv into the command that starts it isolated as one unit.
Every chain starts as root (when the server is root) with a small shell script
(:func:`setup_script`) that joins the unit's cgroups and sets its rlimits before anything
else runs, then (optionally) enters the mount helper's namespace and drops to the sandbox
uid (:meth:`Launcher.privileged_chain`); each step ``exec``s the next, so the process the
server spawned *is* the unit's outermost process.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from cellbox.sandbox.mount_helper import MountHelper
from cellbox.sandbox.policy import (
    EXIT_SETUP_FAILED,
    OOM_SCORE_ADJ,
    PRIVATE_TMP,
    SHELL,
    ULIMIT_FLAGS,
)
from cellbox.sandbox.probe import Capabilities


@dataclass(frozen=True)
class UnitSetup:
    """What the root part of a unit's chain does before the worker's own steps."""

    pidfile: Path
    cgroup_files: list[Path]
    rlimits: dict[str, int]
    chdir: Path | None = None  # only for chains without a step that enters the workdir
    net_namespace: bool = False  # root makes the unit a network namespace (network public)


def setup_script(caps: Capabilities, setup: UnitSetup) -> str:
    """The shell script that puts itself (and so what it execs) into the unit."""
    q = shlex.quote

    def fail(message: str) -> str:
        return f"{{ echo 'cellbox sandbox: {message}' >&2; exit {EXIT_SETUP_FAILED}; }}"

    lines = [f"echo $$ >{q(str(setup.pidfile))} || " + fail("pidfile")]
    for path in setup.cgroup_files:
        lines.append(f"echo 0 >{q(str(path))} || " + fail("cannot join cgroup"))
    lines.append(f"echo {OOM_SCORE_ADJ} >/proc/self/oom_score_adj 2>/dev/null")
    if caps.use_ulimit:
        for name, value in setup.rlimits.items():
            flag, scale = ULIMIT_FLAGS[name]
            lines.append(f"ulimit -{flag} {value // scale} || " + fail("rlimit"))
    lines.append("trap '' XFSZ")  # exceeding the file size limit is EFBIG, not death
    lines.append("umask 022")
    if setup.chdir is not None:
        lines.append(f"cd {q(str(setup.chdir))} || " + fail("cannot enter workdir"))
    if not caps.use_ulimit and caps.prlimit:
        opts = " ".join(f"--{name}={value}" for name, value in setup.rlimits.items())
        lines.append(f'exec {q(caps.prlimit)} {opts} -- "$@"')
    else:
        lines.append('exec "$@"')
    return "\n".join(lines)


def shell_prefix(caps: Capabilities, setup: UnitSetup) -> list[str]:
    prefix = [SHELL, "-c", setup_script(caps, setup), "cellbox-sandbox"]
    if setup.net_namespace:
        # made by root, so no user namespace of the sandbox has any power over it
        assert caps.unshare is not None, "unshare (util-linux) is needed for network public"
        prefix += [caps.unshare, "--net", "--"]
    return prefix


class Launcher(ABC):
    """One way to start a unit's worker. Chosen once per server from the capabilities."""

    mode: str  # as the isolation report names it
    private_view = False  # a private root, /tmp and pid namespace (the unit dies with it)
    wraps_exit_status = False  # death by signal N shows as exit status 128+N
    seccomp = False  # its programs start under cellbox.sandbox.seccomp's filter

    def __init__(self, caps: Capabilities, helper: MountHelper | None = None) -> None:
        self.caps = caps
        self.helper = helper  # when the uid needs its namespace to see its paths

    @abstractmethod
    def command(
        self, argv: list[str], *, setup: UnitSetup, workdir: Path, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """The chain that runs ``argv`` as the unit; (argv, environment to spawn it with)."""

    def namespaces(self, network: str) -> list[str]:
        return []

    def filesystem(self) -> str:
        return "host"

    def tmp_dir(self, workdir: Path) -> str:
        """The worker's TMPDIR: in its work directory unless it gets a private /tmp."""
        return PRIVATE_TMP if self.private_view else str(workdir / ".tmp")

    def chdir_in_setup(self) -> bool:
        """Whether the setup script must enter the work directory itself."""
        return False

    def privileged_chain(self, prefix: list[str], pdeathsig: bool) -> list[str]:
        """``prefix``, then (as root) into the helper's mount namespace and down to the uid."""
        caps = self.caps
        chain = list(prefix)
        if self.helper is not None:
            assert caps.nsenter is not None, "nsenter (util-linux) is needed for the helper"
            chain += [caps.nsenter, f"--mount={self.helper.namespace()}", "--"]
        if caps.root:
            assert caps.setpriv is not None
            chain += [
                caps.setpriv,
                f"--reuid={caps.uid}",
                f"--regid={caps.gid}",
                "--clear-groups",
                "--no-new-privs",
                *(["--pdeathsig=KILL"] if pdeathsig else []),
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        return chain
