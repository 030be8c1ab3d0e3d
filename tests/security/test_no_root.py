"""1. No root: workers run as a dedicated unprivileged uid/gid, never uid 0 inside or outside."""

from __future__ import annotations

import os

from tests.conftest import Client
from tests.security.conftest import (
    Contexts,
    namespace,
    py_value,
    status,
    ts_json,
    unit_pids,
    worker_host_pid,
)

PY_IDENTITY = """
import os, subprocess
status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines()
              if ':\\t' in line)
try:
    os.setuid(0)
    setuid = 'succeeded'
except OSError as exc:
    setuid = exc.errno
{
    'ids': [*os.getresuid(), *os.getresgid()],
    'groups': os.getgroups(),
    'uid_map': open('/proc/self/uid_map').read().split(),
    'gid_map': open('/proc/self/gid_map').read().split(),
    'cap_eff': status['CapEff'].strip(),
    'cap_prm': status['CapPrm'].strip(),
    'no_new_privs': status['NoNewPrivs'].strip(),
    'child': subprocess.run(['id', '-u'], capture_output=True, text=True).stdout.strip(),
    'setuid': setuid,
}
"""

TS_IDENTITY = """
const fs = require('node:fs');
const cp = require('node:child_process');
const status = fs.readFileSync('/proc/self/status', 'utf8');
const field = (name) => status.match(new RegExp('^' + name + ':\\\\s*(\\\\S+)', 'm'))[1];
let setuid = 'succeeded';
try { process.setuid(0); } catch (err) { setuid = err.code || String(err); }
return {
  ids: [process.getuid(), process.geteuid(), process.getgid(), process.getegid()],
  groups: process.getgroups(),
  uid_map: fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\\s+/),
  gid_map: fs.readFileSync('/proc/self/gid_map', 'utf8').trim().split(/\\s+/),
  cap_eff: field('CapEff'),
  no_new_privs: field('NoNewPrivs'),
  child: cp.execFileSync('id', ['-u']).toString().trim(),
  setuid,
};
"""


def _check_maps(uid_map: list[str], gid_map: list[str], uid: int, gid: int) -> None:
    # Read from inside, a map line is "inside-id parent-namespace-id count". Exactly one id
    # is mapped, the sandbox's: uid/gid 0 does not exist in the worker's namespace. (The
    # parent-namespace id is bwrap's intermediate namespace; the host view is checked in
    # test_no_process_of_a_context_runs_as_root_on_the_host.)
    assert uid_map[0::3] == [str(uid)] and uid_map[2::3] == ["1"], uid_map
    assert gid_map[0::3] == [str(gid)] and gid_map[2::3] == ["1"], gid_map


def test_python_worker_is_an_unprivileged_dedicated_uid(api: Client, contexts: Contexts):
    info = isolation_of(api)
    uid, gid = info["uid"], info["gid"]
    assert uid != 0 and gid != 0
    assert info["uid_mode"] == "dedicated"
    assert uid != os.geteuid()  # the server (this test's user) is root here

    seen = py_value(api, PY_IDENTITY, context_id=contexts.new("python"))
    assert seen["ids"] == [uid, uid, uid, gid, gid, gid]
    assert 0 not in seen["groups"]
    _check_maps(seen["uid_map"], seen["gid_map"], uid, gid)
    assert int(seen["cap_eff"], 16) == 0 and int(seen["cap_prm"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert seen["child"] == str(uid)
    assert seen["setuid"] in (1, 22)  # EPERM, or EINVAL: uid 0 is not even mapped


def test_typescript_worker_is_an_unprivileged_dedicated_uid(api: Client, contexts: Contexts):
    info = isolation_of(api)
    uid, gid = info["uid"], info["gid"]
    seen = ts_json(api, TS_IDENTITY, context_id=contexts.new("typescript"))
    assert seen["ids"] == [uid, uid, gid, gid]
    assert 0 not in seen["groups"]
    _check_maps(seen["uid_map"], seen["gid_map"], uid, gid)
    assert int(seen["cap_eff"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert seen["child"] == str(uid)
    assert seen["setuid"] in ("EPERM", "EINVAL")


def test_no_process_of_a_context_runs_as_root_on_the_host(api: Client, contexts: Contexts):
    """Seen from the host: the whole process chain of a worker has no uid or gid 0."""
    info = isolation_of(api)
    for language in ("python", "typescript"):
        context_id = contexts.new(language)
        pids = unit_pids(worker_host_pid(api, context_id))
        assert len(pids) >= 2  # the sandbox's own process(es) and the worker
        for pid in pids:
            fields = status(pid)
            uids = [int(x) for x in fields["Uid"].split()]
            gids = [int(x) for x in fields["Gid"].split()]
            assert set(uids) == {info["uid"]}, (pid, fields["Name"], uids)
            assert set(gids) == {info["gid"]}, (pid, fields["Name"], gids)
            assert int(fields["CapEff"], 16) == 0, (pid, fields["Name"])
            if namespace(pid, "user") == namespace("self", "user"):
                continue  # bwrap's monitor, in the host's namespace: its ids are checked above
            # Read from the host, the user namespaces map nothing but the sandbox ids.
            for kind, expected in (("uid_map", info["uid"]), ("gid_map", info["gid"])):
                with open(f"/proc/{pid}/{kind}") as f:
                    lines = [line.split() for line in f.read().splitlines()]
                assert lines, (pid, kind)
                for _inside, outside, count in lines:
                    assert (int(outside), int(count)) == (expected, 1), (pid, kind, lines)


def isolation_of(api: Client) -> dict:
    response = api.get("/info")
    assert response.status_code == 200
    return response.json()["isolation"]


# With --sandbox off (no namespaces, no cgroups) the uid switch stays: see
# test_isolation_report.py::test_sandbox_off_reports_no_namespaces_and_it_is_true.


PY_PRIORITY = """
import os
def attempt(change):
    try:
        change()
        return 'succeeded'
    except OSError as exc:
        return exc.errno
{
    'policy': os.sched_getscheduler(0),
    'nice': os.getpriority(os.PRIO_PROCESS, 0),
    'realtime': attempt(lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))),
    'higher': attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, -1)),
}
"""

TS_PRIORITY = """
const os = require('node:os');
let higher = 'succeeded';
try { os.setPriority(0, -1); } catch (err) { higher = err.info ? err.info.code : String(err); }
return { nice: os.getPriority(0), higher };
"""


def test_code_runs_as_an_ordinary_thread_and_cannot_get_ahead_of_the_server(
    api: Client, contexts: Contexts
):
    # The server's event loop runs at real-time priority on its CPU (cellbox.placement);
    # a context's code is an ordinary thread and can take neither that nor a higher nice.
    seen = py_value(api, PY_PRIORITY, context_id=contexts.new("python"))
    assert (seen["policy"], seen["nice"]) == (os.SCHED_OTHER, 0)
    assert seen["realtime"] == 1 and seen["higher"] == 13  # EPERM, EACCES
    seen = ts_json(api, TS_PRIORITY, context_id=contexts.new("typescript"))
    assert seen == {"nice": 0, "higher": "EACCES"}
