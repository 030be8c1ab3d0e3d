"""2. Secrets stay with the server: token, server environment and state files are invisible."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import Server
from tests.security.conftest import (
    SERVER_SECRET_VARS,
    SMALL_LIMITS,
    Contexts,
    cmdline,
    host_pids,
    py_value,
    skip_unless_full,
    ts_json,
)

# Variables a worker may legitimately share with the server's environment (same value).
MINIMAL = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "USER", "LOGNAME", "SHELL", "TMPDIR"}
MINIMAL |= {"PWD", "TERM"}
# Set by the sandbox / runtimes themselves (the server's may hold the same value by chance).
MINIMAL |= {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "MPLBACKEND", "MPLCONFIGDIR"}
MINIMAL |= {"IPYTHONDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "OPENBLAS_NUM_THREADS"}
MINIMAL |= {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"}  # the host's CA bundle

PY_ENV = """
import os, subprocess
{'own': dict(os.environ),
 'child': dict(line.split('=', 1) for line in
               subprocess.run(['env'], capture_output=True, text=True).stdout.splitlines()
               if '=' in line)}
"""

TS_ENV = """
const cp = require('node:child_process');
const child = {};
for (const line of cp.execFileSync('env').toString().split('\\n')) {
  const at = line.indexOf('=');
  if (at > 0) child[line.slice(0, at)] = line.slice(at + 1);
}
return {own: {...process.env}, child};
"""

PY_PROC_SCAN = """
import os
read = {}
for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self', 'thread-self']:
    for name in ('environ', 'cmdline'):
        try:
            with open(f'/proc/{pid}/{name}', 'rb') as f:
                read[f'{pid}/{name}'] = f.read().decode('latin-1')
        except OSError:
            pass
read
"""

TS_PROC_SCAN = """
const fs = require('node:fs');
const read = {};
const pids = fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).concat(['self']);
for (const pid of pids) {
  for (const name of ['environ', 'cmdline']) {
    try { read[pid + '/' + name] = fs.readFileSync('/proc/' + pid + '/' + name, 'latin1'); }
    catch (err) {}
  }
}
return read;
"""


@pytest.fixture(scope="module")
def file_token_server() -> Iterator[Server]:
    """A server that generated its own token into ``<state dir>/api-token`` (and its log)."""
    server = Server(**SMALL_LIMITS)
    del server.env["CELLBOX_API_KEY"]
    server.env.update(SERVER_SECRET_VARS)
    server.start()
    try:
        server.token = (server.state_dir / "api-token").read_text().strip()
        assert server.token and server.token in server.read_log()
        skip_unless_full(server)
        yield server
    finally:
        server.stop()
        server.cleanup()


@pytest.fixture
def env_token_server(limited: Server) -> Server:
    """The shared server: given its token in its environment (``CELLBOX_API_KEY``)."""
    return limited


@pytest.fixture(params=["file", "env"])
def any_server(request, file_token_server: Server, env_token_server: Server) -> Server:
    return file_token_server if request.param == "file" else env_token_server


def _check_environment(server: Server, env: dict[str, str], given: dict[str, str]) -> None:
    for key, val in given.items():
        assert env.get(key) == val, key
    for key in ("PATH", "HOME", "LANG"):
        assert env.get(key), f"{key} missing from {sorted(env)}"
    assert not [key for key in env if key.startswith("CELLBOX_")], sorted(env)
    secrets = [server.token, *SERVER_SECRET_VARS.values()]
    for key, val in env.items():
        for secret in secrets:
            assert secret not in val and secret not in key, key
    leaked = [
        key
        for key, val in server.env.items()
        if key not in MINIMAL and key not in given and env.get(key) == val
    ]
    assert not leaked, f"server variables visible to user code: {leaked}"
    # nothing of the server's state on PATH; the context's own work directory (the commands
    # of the packages it installed) is the context's
    home = env["HOME"].rstrip("/") + "/"
    assert not [
        p for p in env["PATH"].split(":") if str(server.state_dir) in p and not p.startswith(home)
    ]


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_worker_environment_is_clean(any_server: Server, language: str):
    given = {"GIVEN_BY_REQUEST": "yes", "OTHER": "x=y"}
    with any_server.client() as client:
        context_id = client.context(language)
        try:
            if language == "python":
                seen = py_value(client, PY_ENV, context_id=context_id, env_vars=given)
            else:
                seen = ts_json(client, TS_ENV, context_id=context_id, env_vars=given)
        finally:
            client.delete(f"/contexts/{context_id}")
    _check_environment(any_server, seen["own"], given)
    _check_environment(any_server, seen["child"], given)


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_no_readable_proc_file_holds_the_token(any_server: Server, language: str):
    with any_server.client() as client:
        context_id = client.context(language)
        try:
            if language == "python":
                read = py_value(client, PY_PROC_SCAN, context_id=context_id)
            else:
                read = ts_json(client, TS_PROC_SCAN, context_id=context_id)
        finally:
            client.delete(f"/contexts/{context_id}")
    assert "self/environ" in read and "self/cmdline" in read
    for secret in (any_server.token, *SERVER_SECRET_VARS.values(), "CELLBOX_API_KEY"):
        holders = [name for name, text in read.items() if secret in text]
        assert not holders, f"{secret[:8]}… readable in /proc/{holders}"


def test_token_is_on_no_command_line_of_the_host(env_token_server: Server):
    """While contexts of both languages run, no process on the host has it in its argv."""
    with env_token_server.client() as client:
        made = Contexts(client)
        try:
            for language in ("python", "typescript"):
                client.run("1", context_id=made.new(language))
            token = env_token_server.token.encode()
            holders = [pid for pid in host_pids() if token in cmdline(pid)]
            assert not holders, [cmdline(pid)[:200] for pid in holders]
        finally:
            made.close()


STATE_PROBE_PY = """
import os
state = {state!r}
found = {{}}
for path in [state + '/api-token', state + '/server.log', state, state + '/contexts',
             state + '/sandbox', state + '/sandbox/run']:
    try:
        if os.path.isdir(path):
            found[path] = 'listed: ' + ' '.join(sorted(os.listdir(path)))
        else:
            found[path] = 'read: ' + open(path).read()
    except OSError as exc:
        found[path] = type(exc).__name__
found
"""

STATE_PROBE_TS = """
const fs = require('node:fs');
const state = {state!r};
const found = {{}};
for (const path of [state + '/api-token', state + '/server.log', state, state + '/contexts',
                    state + '/sandbox', state + '/sandbox/run']) {{
  try {{
    if (fs.statSync(path).isDirectory()) found[path] = 'listed: ' + fs.readdirSync(path).sort().join(' ');
    else found[path] = 'read: ' + fs.readFileSync(path, 'utf8');
  }} catch (err) {{ found[path] = err.code; }}
}}
return found;
"""


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_state_files_are_out_of_reach(file_token_server: Server, language: str):
    server = file_token_server
    state = str(server.state_dir)
    assert (server.state_dir / "api-token").exists()
    with server.client() as client:
        made = Contexts(client)
        try:
            neighbour = client.get(f"/contexts/{made.new('python')}").json()["cwd"]
            own_id = made.new(language)
            own = client.get(f"/contexts/{own_id}").json()["cwd"]
            if language == "python":
                found = py_value(client, STATE_PROBE_PY.format(state=state), context_id=own_id)
            else:
                found = ts_json(client, STATE_PROBE_TS.format(state=state), context_id=own_id)
        finally:
            made.close()
    for path, outcome in found.items():
        assert server.token not in outcome, path
        assert not outcome.startswith("read: "), (path, outcome)
        if outcome.startswith("listed: "):
            names = set(outcome[len("listed: ") :].split())
            # at most the way down to the context's own work directory
            assert names <= {"contexts", os.path.basename(own)}, (path, names)
            assert os.path.basename(neighbour) not in names, (path, names)
