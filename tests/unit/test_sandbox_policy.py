"""The sandbox's pure parts: policy and launch chains, built against a made-up host."""

from __future__ import annotations

import dataclasses
import resource
from pathlib import Path

import pytest

from cellbox.sandbox import policy
from cellbox.sandbox.launchers import (
    BwrapLauncher,
    DirectLauncher,
    UidLauncher,
    UnitSetup,
    ZygoteLauncher,
)
from cellbox.sandbox.launchers.base import setup_script
from cellbox.sandbox.launchers.bwrap import SECCOMP_EXEC, bwrap_args
from cellbox.sandbox.probe import BWRAP, DIRECT, UID_ONLY, Capabilities
from cellbox.sandbox.workdirs import StateLayout

LIMITS = policy.Limits(memory_bytes=256 << 20, pids=64, file_size_bytes=16 << 20, open_files=99)
LAYOUT = StateLayout(Path("/srv/state"))
WORKDIR = LAYOUT.contexts / "abc"


def host(**changes: object) -> Capabilities:
    caps = Capabilities(
        root=True,
        server_uid=0,
        uid=61000,
        gid=61001,
        user="cellbox",
        bwrap="/usr/bin/bwrap",
        setpriv="/usr/bin/setpriv",
        nsenter="/usr/bin/nsenter",
        unshare="/usr/bin/unshare",
        prlimit=None,
        env_tool="/usr/bin/env",
        use_ulimit=True,
        bin_dirs=("/opt/py/bin", "/opt/node/bin"),
        runtime_paths=("/opt/py", "/tmp/inst"),
        real_paths=("/opt/py-real", "/tmp/inst"),
        top_level=(("/bin", "usr/bin"), ("/lib64", None)),
        system_python=False,
        launcher=BWRAP,
    )
    return dataclasses.replace(caps, **changes)


def setup(chdir: Path | None = None) -> UnitSetup:
    return UnitSetup(
        pidfile=LAYOUT.pidfile("abc"),
        cgroup_files=[Path("/cg/memory/u/tasks")],
        rlimits={"core": 0, "nofile": 99},
        chdir=chdir,
    )


def pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == flag]


def test_bwrap_args_follow_the_policy():
    args = bwrap_args(host(), LAYOUT, LIMITS, network="off")
    for name in ("user", "pid", "ipc", "uts", "cgroup", "net"):
        assert f"--unshare-{name}" in args
    assert "--disable-userns" in args
    assert args[args.index("--uid") + 1] == "61000" and args[args.index("--gid") + 1] == "61001"
    assert args[args.index("--size") + 1] == str(LIMITS.memory_bytes)
    assert args[args.index("--size") + 2 : args.index("--size") + 4] == ["--tmpfs", "/tmp"]
    assert ("usr/bin", "/bin") in pairs(args, "--symlink")
    binds = pairs(args, "--ro-bind")
    assert ("/lib64", "/lib64") in binds and ("/opt/py-real", "/opt/py") in binds
    assert (str(LAYOUT.etc / "passwd"), "/etc/passwd") in binds
    assert (str(LAYOUT.etc / "resolv.conf"), "/etc/resolv.conf") in binds
    tried = dict(pairs(args, "--ro-bind-try"))
    assert set(tried) == {f"/etc/{name}" for name in policy.ETC_ENTRIES} - {"/etc/resolv.conf"}
    assert "--proc" in args and "--tmpfs" in args


def test_network_on_keeps_the_host_network_and_compat_drops_new_flags():
    args = bwrap_args(host(bwrap_compat=True), LAYOUT, LIMITS, network="host")
    assert "--unshare-net" not in args
    assert ("/etc/resolv.conf", "/etc/resolv.conf") in pairs(args, "--ro-bind-try")
    assert "--disable-userns" not in args and "--size" not in args


def test_zygote_bwrap_has_no_pid_namespace_and_the_host_proc():
    args = bwrap_args(host(), LAYOUT, LIMITS, network="host", zygote=True)
    assert "--unshare-pid" not in args and "--disable-userns" not in args
    assert ("/proc", "/proc") in pairs(args, "--bind") and "--proc" not in args


def test_network_public_worker_gets_roots_namespace_zygote_children_their_own():
    worker = bwrap_args(host(), LAYOUT, LIMITS, network="public")
    assert "--unshare-net" not in worker  # root made it before bwrap (below)
    assert (str(LAYOUT.etc / "resolv.conf"), "/etc/resolv.conf") in pairs(worker, "--ro-bind")
    assert "--unshare-net" in bwrap_args(host(), LAYOUT, LIMITS, network="public", zygote=True)
    zygote = ZygoteLauncher(BwrapLauncher(host(), None, LAYOUT, LIMITS, "public", None))
    assert zygote.fork_spec([], {}, {}).network is False  # each child unshares its own
    made = dataclasses.replace(setup(), net_namespace=True)
    launcher = BwrapLauncher(host(), None, LAYOUT, LIMITS, "public", None)
    argv, _ = launcher.command(["python"], setup=made, workdir=WORKDIR, env={})
    unshare = argv.index("/usr/bin/unshare")
    assert argv[unshare : unshare + 3] == ["/usr/bin/unshare", "--net", "--"]
    assert unshare < argv.index("/usr/bin/setpriv")  # still root
    assert launcher.namespaces("public")[-1] == "net"


def test_a_state_directory_inside_a_runtime_path_is_masked():
    inside = StateLayout(Path("/opt/py/state"))
    args = bwrap_args(host(), inside, LIMITS, network="host")
    assert args[-2:] == ["--tmpfs", "/opt/py/state"]


def test_bwrap_chain_drops_privileges_and_hides_loader_variables_from_root():
    launcher = BwrapLauncher(host(), None, LAYOUT, LIMITS, "host", None)
    env = {"PATH": "/bin", "LD_PRELOAD": "x.so", "TMPDIR": "/tmp"}
    argv, outer = launcher.command(["python"], setup=setup(), workdir=WORKDIR, env=env)
    assert argv[:2] == [policy.SHELL, "-c"]
    assert argv[4] == "/usr/bin/setpriv" and "--reuid=61000" in argv
    assert "--pdeathsig=KILL" not in argv
    assert argv[argv.index("/usr/bin/bwrap") - 1] == "--"
    assert ("LD_PRELOAD", "x.so") in pairs(argv, "--setenv")
    assert outer == {"PATH": "/bin"}
    assert argv[-6:] == ["--", *SECCOMP_EXEC, "python"]  # the filter, then the program
    assert (str(WORKDIR), str(WORKDIR)) in pairs(argv, "--bind")
    assert launcher.tmp_dir(WORKDIR) == "/tmp"


def test_zygote_chain_binds_the_contexts_directory_and_uses_the_private_tmp():
    zygote = ZygoteLauncher(BwrapLauncher(host(), None, LAYOUT, LIMITS, "off", None))
    argv, _ = zygote.command(["z"], setup=setup(), workdir=LAYOUT.contexts, env={})
    assert (str(LAYOUT.contexts), str(LAYOUT.contexts)) in pairs(argv, "--bind")
    assert argv[argv.index("--chdir") + 1] == "/"
    assert zygote.tmp_dir(LAYOUT.contexts) == "/tmp"
    spec = zygote.fork_spec([Path("/cg/tasks")], {"A": "b"}, {"core": 0})
    assert spec.network is False and spec.tmpfs_size == LIMITS.memory_bytes
    assert spec.keep == ["/tmp/inst"]


def test_uid_only_chain_enters_the_workdir_after_the_drop():
    launcher = UidLauncher(host(launcher=UID_ONLY), None)
    env = {"PATH": "/bin", "BASH_ENV": "/x"}
    argv, outer = launcher.command(["python"], setup=setup(), workdir=WORKDIR, env=env)
    assert "--pdeathsig=KILL" in argv
    i = argv.index("/usr/bin/env")
    assert argv[i : i + 4] == ["/usr/bin/env", f"--chdir={WORKDIR}", "--", "BASH_ENV=/x"]
    assert outer == {"PATH": "/bin"} and argv[-1] == "python"
    assert launcher.filesystem() == "host" and launcher.tmp_dir(WORKDIR) == f"{WORKDIR}/.tmp"


def test_direct_chain_has_no_privilege_drop():
    caps = host(root=False, server_uid=61000, launcher=DIRECT)
    launcher = DirectLauncher(caps, None)
    argv, env = launcher.command(["w"], setup=setup(WORKDIR), workdir=WORKDIR, env={"A": "1"})
    assert "--reuid=61000" not in argv and env == {"A": "1"}
    assert argv[3:] == ["cellbox-sandbox", "/usr/bin/setpriv", "--pdeathsig=KILL", "--", "w"]
    assert f"cd {WORKDIR} ||" in argv[2]


def test_setup_script_joins_cgroups_before_rlimits_and_exec():
    script = setup_script(host(), setup()).splitlines()
    assert script[0].startswith(f"echo $$ >{LAYOUT.pidfile('abc')}")
    assert script[1].startswith("echo 0 >/cg/memory/u/tasks ||")
    assert any(line.startswith("ulimit -c 0 ||") for line in script)
    assert any(line.startswith("ulimit -n 99 ||") for line in script)
    assert script[-1] == 'exec "$@"'
    with_prlimit = setup_script(host(use_ulimit=False, prlimit="/usr/bin/prlimit"), setup())
    assert with_prlimit.splitlines()[-1] == 'exec /usr/bin/prlimit --core=0 --nofile=99 -- "$@"'


def test_rlimits_stand_in_for_missing_cgroups():
    full = policy.rlimits(LIMITS, memory_cgroup=True, pids_cgroup=True, uid_threads=7)
    assert full == {"core": 0, "fsize": 16 << 20, "nofile": 99}
    bare = policy.rlimits(LIMITS, memory_cgroup=False, pids_cgroup=False, uid_threads=7)
    assert bare["nproc"] == 64 + 7 and bare["data"] == LIMITS.memory_bytes
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = policy.within_hard_limits({"nofile": hard + 1 if hard > 0 else 1 << 40})
    assert lowered["nofile"] <= hard or hard == resource.RLIM_INFINITY


def test_environment_and_checks():
    env = policy.environment(
        user="cellbox", home=WORKDIR, tmp="/tmp", bin_dirs=["/a/bin"], unit_tag=None
    )
    assert env["PATH"].startswith("/a/bin:") and env["MPLCONFIGDIR"] == "/tmp/.matplotlib"
    assert policy.UNIT_TAG not in env
    tagged = policy.environment(user="u", home=WORKDIR, tmp="/x", bin_dirs=[], unit_tag="w1")
    assert tagged[policy.UNIT_TAG] == "w1"
    for bad in ({"A=B": "1"}, {"": "1"}, {"A": "x\0y"}):
        with pytest.raises(ValueError):
            policy.checked_env(bad)
    for unit in ("../x", "", "a/b", "x" * 200):
        with pytest.raises(ValueError):
            policy.check_unit(unit)
    assert policy.namespaces(True) == ["user", "pid", "ipc", "uts", "mount", "cgroup"]
    assert policy.namespaces(False)[-1] == "net"
    with pytest.raises(ValueError):
        policy.Limits(pids=0)
