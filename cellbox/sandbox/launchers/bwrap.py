"""The full chain: root shell → (nsenter) → setpriv → bubblewrap → the worker.

bubblewrap runs already as the sandbox uid (never as root: uid 0 inside would keep host-root
power over bind mounts) and gives the worker new user/pid/ipc/uts/cgroup (and, when off,
net) namespaces, a private read-only root with the system directories, a fresh /proc, a
private /tmp and only the context's work directory writable.

:func:`bwrap_args` is pure: it reads the host only through the capabilities.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cellbox.sandbox import seccomp
from cellbox.sandbox.font_cache import FontCache
from cellbox.sandbox.launchers.base import Launcher, UnitSetup, shell_prefix
from cellbox.sandbox.mount_helper import MountHelper
from cellbox.sandbox.policy import (
    ETC_ENTRIES,
    ETC_SYSTEM_PYTHON,
    HOSTNAME,
    PRIVATE_TMP,
    Limits,
    is_under,
    namespaces,
    split_for_root,
    synthesized_etc,
)
from cellbox.sandbox.probe import Capabilities
from cellbox.sandbox.workdirs import StateLayout

# In front of every sandboxed program: the seccomp filter that keeps btrfs subvolumes out of
# the code's hands (see cellbox.sandbox.seccomp), inherited by all the program starts.
SECCOMP_EXEC = (sys.executable, "-I", "-S", seccomp.__file__)

_UNSHARE = {  # bwrap makes the mount namespace always
    "user": "--unshare-user",
    "pid": "--unshare-pid",
    "ipc": "--unshare-ipc",
    "uts": "--unshare-uts",
    "cgroup": "--unshare-cgroup",
    "net": "--unshare-net",
}


def bwrap_args(
    caps: Capabilities,
    layout: StateLayout,
    limits: Limits,
    network: str,
    *,
    zygote: bool = False,
) -> list[str]:
    """bwrap's options but the work directory binds; ``zygote``: see ZygoteLauncher.

    ``network`` is the server's mode. Under ``public`` a worker's network namespace is made
    by root before bwrap runs (``UnitSetup.net_namespace``), so bwrap makes none; a zygote
    gets an empty one and each child it forks makes its own.
    """
    bwrap_net = network == "off" or (zygote and network != "host")
    wanted = [ns for ns in namespaces(not bwrap_net) if not (zygote and ns == "pid")]
    args = [_UNSHARE[ns] for ns in wanted if ns in _UNSHARE]
    if not caps.bwrap_compat and not zygote:
        args.append("--disable-userns")
    args += ["--uid", str(caps.uid), "--gid", str(caps.gid), "--hostname", HOSTNAME]
    args += ["--die-with-parent", "--new-session"]
    args += ["--ro-bind", "/usr", "/usr"]
    for path, target in caps.top_level:
        args += ["--symlink", target, path] if target is not None else ["--ro-bind", path, path]
    own = synthesized_etc(network)
    etc = list(ETC_ENTRIES) + (list(ETC_SYSTEM_PYTHON) if caps.system_python else [])
    for name in etc:
        if name not in own:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name in own:
        args += ["--ro-bind", str(layout.etc_file(name)), f"/etc/{name}"]
    # a zygote has no pid namespace to mount a proc of; its children mount their own
    args += ["--bind", "/proc", "/proc"] if zygote else ["--proc", "/proc"]
    args += ["--dev", "/dev"]
    if not caps.bwrap_compat:  # tmpfs pages are charged to the memory cgroup anyway
        args += ["--size", str(limits.tmpfs_bytes)]
    args += ["--tmpfs", PRIVATE_TMP]
    args += ["--dir", "/var", "--symlink", "../tmp", "/var/tmp"]
    for path, real in zip(caps.runtime_paths, caps.real_paths, strict=True):
        args += ["--ro-bind", real, path]
    # A state directory below a read-only path (say, inside the repo) must stay hidden:
    # it holds the API token. The work directory is bound on top of the mask later.
    if state_dir_masked(caps, layout):
        args += ["--tmpfs", str(layout.state_dir)]
    return args


def state_dir_masked(caps: Capabilities, layout: StateLayout) -> bool:
    return any(is_under(str(layout.state_dir), p) for p in caps.runtime_paths)


def font_cache_binds(cache_dir: Path, names: list[str]) -> list[str]:
    """Options that show the font cache's ``names`` at the context's MPLCONFIGDIR."""
    target = f"{PRIVATE_TMP}/.matplotlib"
    args = ["--dir", target]
    for name in names:
        # -try: a concurrent rebuild may swap the directory under us
        args += ["--ro-bind-try", str(cache_dir / name), f"{target}/{name}"]
    return args


class BwrapLauncher(Launcher):
    mode = "bubblewrap"
    private_view = True
    seccomp = True
    wraps_exit_status = True

    def __init__(
        self,
        caps: Capabilities,
        helper: MountHelper | None,
        layout: StateLayout,
        limits: Limits,
        network: str,
        fonts: FontCache | None,
    ) -> None:
        super().__init__(caps, helper)
        self.layout = layout
        self.limits = limits
        self.network = network
        self.fonts = fonts
        self._args = bwrap_args(caps, layout, limits, network)  # the same for every worker
        # a worker whose network namespace root made (its own resolv.conf, no --unshare-net)
        self._own_net_args = bwrap_args(caps, layout, limits, "public")

    def namespaces(self, network: str) -> list[str]:
        return namespaces(network == "host")

    def filesystem(self) -> str:
        return "private-root"

    def command(
        self, argv: list[str], *, setup: UnitSetup, workdir: Path, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        binds = ["--bind", str(workdir), str(workdir)]
        args = self._own_net_args if setup.net_namespace else self._args
        return self.chain(argv, setup=setup, args=args, binds=binds, chdir=workdir, env=env)

    def chain(
        self,
        argv: list[str],
        *,
        setup: UnitSetup,
        args: list[str],
        binds: list[str],
        chdir: Path,
        env: dict[str, str],
    ) -> tuple[list[str], dict[str, str]]:
        """The whole chain; the root part does not see loader or shell variables."""
        assert self.caps.bwrap is not None
        outer, late = split_for_root(env)
        chain = self.privileged_chain(shell_prefix(self.caps, setup), pdeathsig=False)
        chain += [self.caps.bwrap, *args]
        if self.fonts is not None:
            chain += font_cache_binds(self.fonts.dir, self.fonts.files())
        chain += [*binds, "--remount-ro", "/", "--chdir", str(chdir)]
        for key, value in late.items():
            chain += ["--setenv", key, value]
        return [*chain, "--", *SECCOMP_EXEC, *argv], outer
