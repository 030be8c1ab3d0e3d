"""3. Namespaces by default: pid/ipc/uts/mount/cgroup, fresh /proc, read-only system, private /tmp,
new session, inherited fds closed. Python and TypeScript contexts alike."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

import cellbox
from tests.conftest import Client, Server
from tests.security.conftest import (
    Contexts,
    isolation,
    namespace,
    py_value,
    ts_json,
    unit_pids,
    worker_host_pid,
)

LANGUAGES = ["python", "typescript"]
PRIVATE = ("pid", "ipc", "uts", "mnt", "cgroup", "user")


def _run(client: Client, language: str, context_id: str, py: str, ts: str):
    if language == "python":
        return py_value(client, py, context_id=context_id)
    return ts_json(client, ts, context_id=context_id)


@pytest.mark.parametrize("language", LANGUAGES)
def test_worker_has_its_own_namespaces(
    limited: Server, offline: Server, api: Client, contexts: Contexts, language: str
):
    """Seen from the host: new pid/ipc/uts/mount/cgroup/user and net namespaces."""
    server_pid = limited.process.pid
    first = worker_host_pid(api, contexts.new(language))
    second = worker_host_pid(api, contexts.new(language))
    for kind in (*PRIVATE, "net"):
        assert namespace(first, kind) != namespace(server_pid, kind), kind
        assert namespace(first, kind) != namespace(second, kind), kind
    assert "net" in isolation(limited)["namespaces"]  # network public

    with offline.client() as client:
        made = Contexts(client)
        try:
            cut = worker_host_pid(client, made.new(language))
            assert namespace(cut, "net") != namespace(offline.process.pid, "net")
            for kind in PRIVATE:
                assert namespace(cut, kind) != namespace(offline.process.pid, kind), kind
        finally:
            made.close()
    assert set(isolation(offline)["namespaces"]) >= {"pid", "ipc", "uts", "mount", "cgroup", "net"}


PY_VIEW = """
import os, socket
procs = {}
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            procs[pid] = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()
        except OSError:
            procs[pid] = '?'
stat = open('/proc/self/stat').read().rsplit(')', 1)[1].split()
{'procs': procs, 'pid': os.getpid(), 'sid': int(stat[3]), 'hostname': socket.gethostname(),
 'cgroup': open('/proc/self/cgroup').read().split()}
"""

TS_VIEW = """
const fs = require('node:fs');
const os = require('node:os');
const procs = {};
for (const pid of fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p))) {
  try { procs[pid] = fs.readFileSync('/proc/' + pid + '/cmdline', 'latin1').split('\\0').join(' '); }
  catch (err) { procs[pid] = '?'; }
}
const stat = fs.readFileSync('/proc/self/stat', 'utf8').split(')').pop().trim().split(/\\s+/);
return {procs, pid: process.pid, sid: Number(stat[3]), hostname: os.hostname(),
        cgroup: fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split(/\\s+/)};
"""


@pytest.mark.parametrize("language", LANGUAGES)
def test_fresh_proc_shows_only_the_context_itself(
    limited: Server, api: Client, contexts: Contexts, language: str
):
    other = contexts.new("python")
    api.run("import subprocess\np = subprocess.Popen(['sleep', '4242.31'])", context_id=other)
    own = contexts.new(language)
    view = _run(api, language, own, PY_VIEW, TS_VIEW)
    cmdlines = " | ".join(view["procs"].values())
    assert "4242.31" not in cmdlines  # another context's process
    assert "cellbox.cli" not in cmdlines  # the server
    assert "pytest" not in cmdlines  # the host
    assert len(view["procs"]) <= 4, view["procs"]  # the sandbox's init, the worker (+ helpers)
    assert int(max(view["procs"], key=int)) < 100  # a fresh pid namespace numbers from 1
    assert view["pid"] <= 4
    # --new-session: the worker's session begins inside the sandbox (a session from outside
    # the pid namespace would show as 0), so it has no terminal of the server's to push into
    assert str(view["sid"]) in view["procs"], view
    assert view["hostname"] == "cellbox"
    assert os.uname().nodename != "cellbox"
    # cgroup namespace: the context sees its own cgroups as the root
    assert all(line.endswith(":/") for line in view["cgroup"]), view["cgroup"]


def _targets() -> list[str]:
    venv = sys.prefix
    package = os.path.dirname(os.path.abspath(cellbox.__file__))
    return ["/usr/bin", "/usr/lib", "/etc", "/", venv, venv + "/bin", package, "/var", "/bin"]


PY_WRITE = """
import os
results = {{}}
for directory in {targets!r}:
    path = os.path.join(directory, {name!r})
    try:
        with open(path, 'w') as f:
            f.write('owned')
        results[directory] = 'written'
    except OSError as exc:
        results[directory] = exc.errno
for victim in ['/etc/passwd', '/etc/hosts', {package_file!r}, {python!r}]:
    try:
        with open(victim, 'a') as f:
            f.write('owned')
        results[victim] = 'written'
    except OSError as exc:
        results[victim] = exc.errno
for directory in ['.', '/tmp']:
    with open(os.path.join(directory, {name!r}), 'w') as f:
        f.write('mine')
    results[directory] = 'ok'
results
"""

TS_WRITE = """
const fs = require('node:fs');
const path = require('node:path');
const results = {{}};
for (const dir of {targets}) {{
  try {{ fs.writeFileSync(path.join(dir, {name!r}), 'owned'); results[dir] = 'written'; }}
  catch (err) {{ results[dir] = err.code; }}
}}
for (const victim of ['/etc/passwd', '/etc/hosts', {package_file!r}, process.execPath]) {{
  try {{ fs.appendFileSync(victim, 'owned'); results[victim] = 'written'; }}
  catch (err) {{ results[victim] = err.code; }}
}}
for (const dir of ['.', '/tmp']) {{
  fs.writeFileSync(path.join(dir, {name!r}), 'mine');
  results[dir] = 'ok';
}}
return results;
"""


@pytest.mark.parametrize("language", LANGUAGES)
def test_system_installation_and_etc_are_read_only(api: Client, contexts: Contexts, language: str):
    import json

    name = f"cellbox-probe-{secrets.token_hex(4)}"
    package_file = os.path.abspath(cellbox.__file__)
    targets = _targets()
    before = Path(package_file).read_bytes()
    fields = {"targets": targets, "name": name, "package_file": package_file}
    py = PY_WRITE.format(**fields, python=sys.executable)
    ts = TS_WRITE.format(**{**fields, "targets": json.dumps(targets)})
    results = _run(api, language, contexts.new(language), py, ts)
    refused = {"python": {13, 30, 1, 2}, "typescript": {"EACCES", "EROFS", "EPERM", "ENOENT"}}
    for directory in targets:
        assert results[directory] in refused[language], (directory, results[directory])
        assert not os.path.exists(os.path.join(directory, name))
    for victim, outcome in results.items():
        if victim not in (".", "/tmp"):
            assert outcome in refused[language], (victim, outcome)
    assert results["."] == "ok" and results["/tmp"] == "ok"  # its own dirs are writable
    assert Path(package_file).read_bytes() == before
    assert not os.path.exists(os.path.join("/tmp", name))  # /tmp is not the host's


@pytest.mark.parametrize("language", LANGUAGES)
def test_tmp_is_private_to_each_context(api: Client, contexts: Contexts, language: str):
    name = f"/tmp/private-{secrets.token_hex(4)}"
    writer = contexts.new("python")
    api.run(f"open({name!r}, 'w').write('x')", context_id=writer)
    assert py_value(api, f"__import__('os').path.exists({name!r})", context_id=writer) is True
    reader = contexts.new(language)
    seen = _run(
        api,
        language,
        reader,
        f"__import__('os').path.exists({name!r})",
        f"return require('node:fs').existsSync({name!r})",
    )
    assert seen is False
    assert not os.path.exists(name)


PY_SHM = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
shmid = libc.shmget({key}, 4096, {flags})
(shmid, ctypes.get_errno())
"""


def test_ipc_namespace_hides_sysv_shared_memory(api: Client, contexts: Contexts):
    key = 0x4242_0000 + secrets.randbelow(0xFFFF)
    a, b = contexts.new("python"), contexts.new("python")
    made, _ = py_value(api, PY_SHM.format(key=key, flags=0o1000 | 0o666), context_id=a)
    assert made >= 0  # IPC_CREAT worked in A
    found, errno = py_value(api, PY_SHM.format(key=key, flags=0), context_id=b)
    assert (found, errno) == (-1, 2)  # ENOENT: B does not share A's IPC namespace
    with open("/proc/sysvipc/shm") as f:
        assert str(key) not in [line.split()[0] for line in f.read().splitlines()[1:]]


PY_FDS = """
import os
fds = {}
for fd in os.listdir('/proc/self/fd'):
    try:
        fds[fd] = os.readlink(f'/proc/self/fd/{fd}')
    except OSError:
        pass
fds
"""

TS_FDS = """
const fs = require('node:fs');
const fds = {};
for (const fd of fs.readdirSync('/proc/self/fd')) {
  try { fds[fd] = fs.readlinkSync('/proc/self/fd/' + fd); } catch (err) {}
}
return fds;
"""

_SAFE_KINDS = ("pipe:", "socket:", "anon_inode:", "/dev/null")


@pytest.mark.parametrize("language", LANGUAGES)
def test_only_protocol_and_own_fds_are_open(
    limited: Server, api: Client, contexts: Contexts, language: str
):
    own = contexts.new(language)
    neighbour = contexts.new(language)
    fds = _run(api, language, own, PY_FDS, TS_FDS)
    assert {"0", "1", "2"} <= set(fds)
    files = {fd: target for fd, target in fds.items() if not target.startswith(_SAFE_KINDS)}
    allowed_dirs = ("/usr/", sys.prefix, "/proc/", "/dev/", "/tmp/")
    workdir = api.get(f"/contexts/{own}").json()["cwd"]
    stray = {
        fd: target
        for fd, target in files.items()
        if not target.startswith((*allowed_dirs, workdir)) or target == "/proc/self/fd"
    }
    stray.pop(max(fds, key=int), None)  # the directory listing /proc/self/fd itself
    assert not stray, stray

    # From the host: nothing the server holds (its listening socket, its log, the state
    # directory) reached the context, and two contexts share no open file.
    server_targets = _fd_targets({limited.process.pid})
    own_targets = _fd_targets(unit_pids(worker_host_pid(api, own)))
    neighbour_targets = _fd_targets(unit_pids(worker_host_pid(api, neighbour)))
    # (anonymous inodes all read alike, "anon_inode:[eventfd]": they cannot be compared)
    comparable = {t for t in own_targets if not t.startswith(("anon_inode:", "/dev/"))}
    shared = {t for t in comparable & server_targets if not t.startswith("pipe:")}
    assert not shared, shared
    assert not comparable & neighbour_targets, comparable & neighbour_targets
    assert any(t.startswith("socket:") for t in comparable)  # the protocol socket is there
    assert not [t for t in own_targets if t.startswith(str(limited.state_dir) + "/server.log")]


def _fd_targets(pids: set[int]) -> set[str]:
    targets: set[str] = set()
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                targets.add(os.readlink(f"/proc/{pid}/fd/{name}"))
            except OSError:
                continue
    return targets


PY_MOUNTS = "open('/proc/self/mountinfo').read()"
TS_MOUNTS = "return require('node:fs').readFileSync('/proc/self/mountinfo', 'utf8')"
# Writable places a sandbox may have besides the work directory: its private /tmp and the
# kernel's own pseudo filesystems.
_WRITABLE_OK = ("/tmp", "/dev/shm", "/dev/pts", "/dev/mqueue", "/proc", "/var/tmp")
_DEVICE_NODES = {f"/dev/{name}" for name in ("null", "zero", "full", "random", "urandom", "tty")}


@pytest.mark.parametrize("language", LANGUAGES)
def test_only_the_own_work_directory_and_tmp_are_writable_mounts(
    api: Client, contexts: Contexts, language: str
):
    context_id = contexts.new(language)
    workdir = api.get(f"/contexts/{context_id}").json()["cwd"]
    text = _run(api, language, context_id, PY_MOUNTS, TS_MOUNTS)
    writable = []
    for line in text.splitlines():
        fields = line.split()
        mount_point, options = fields[4], fields[5].split(",")
        separator = fields.index("-")
        fstype, super_options = fields[separator + 1], fields[separator + 3].split(",")
        if "rw" not in options or "ro" in super_options and fstype != "tmpfs":
            continue
        if fstype in ("proc", "devpts", "mqueue", "sysfs") and mount_point != "/":
            continue
        if fstype == "devtmpfs" and mount_point in _DEVICE_NODES:
            continue  # single device nodes (bwrap --dev), no directory
        writable.append((mount_point, fstype))
    allowed = {workdir, "/dev"}  # "/dev": the tmpfs of bwrap --dev, device nodes only
    unexpected = [
        (point, fstype)
        for point, fstype in writable
        if point not in allowed and not point.startswith(_WRITABLE_OK)
    ]
    assert not unexpected, unexpected
    assert workdir in [point for point, _ in writable]
