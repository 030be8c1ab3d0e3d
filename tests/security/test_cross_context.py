"""4. Contexts are isolated from each other: no seeing or signalling another context's
processes, no reading or writing another context's work directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import Client
from tests.security.conftest import (
    Contexts,
    alive,
    describe,
    pids_with_marker,
    py_value,
    run_ok,
    ts_json,
    unit_pids,
    worker_host_pid,
)

LANGUAGES = ["python", "typescript"]


def _victim(api: Client, contexts: Contexts, language: str) -> tuple[str, str, str]:
    """A context holding a secret variable, a secret file and a running child process."""
    victim = contexts.new(language)
    secret = secrets.token_hex(8)
    marker = f"4242.{secrets.randbelow(10**6)}"
    if language == "python":
        run_ok(
            api,
            f"import subprocess\nkept = {secret!r}\nopen('secret.txt', 'w').write(kept)\n"
            f"child = subprocess.Popen(['sleep', '{marker}'])",
            context_id=victim,
        )
    else:
        run_ok(
            api,
            f"var kept = {secret!r}; require('node:fs').writeFileSync('secret.txt', kept);\n"
            f"var child = require('node:child_process').spawn('sleep', ['{marker}'])",
            context_id=victim,
        )
    return victim, secret, marker


def _victim_intact(api: Client, victim: str, secret: str, marker: str) -> None:
    language = describe(api, victim)["language"]
    body = run_ok(api, "kept", context_id=victim)
    assert body["items"][0]["text"] == repr(secret)
    assert pids_with_marker(marker), f"the victim's child ({marker}) was killed"
    cwd = describe(api, victim)["cwd"]
    assert (Path(cwd) / "secret.txt").read_text() == secret
    assert sorted(os.listdir(cwd)) == ["secret.txt"], (language, os.listdir(cwd))


PY_SIGNAL = """
import os, signal
outcome = {{}}
for pid in {pids!r}:
    for sig in (0, signal.SIGKILL):
        try:
            os.kill(pid, sig)
            outcome[f'{{pid}}/{{sig}}'] = 'delivered'
        except OSError as exc:
            outcome[f'{{pid}}/{{sig}}'] = exc.errno
outcome
"""

TS_SIGNAL = """
const outcome = {{}};
for (const pid of {pids!r}) {{
  for (const sig of [0, 'SIGKILL']) {{
    try {{ process.kill(pid, sig); outcome[pid + '/' + sig] = 'delivered'; }}
    catch (err) {{ outcome[pid + '/' + sig] = err.code; }}
  }}
}}
return outcome;
"""


@pytest.mark.parametrize("victim_language", LANGUAGES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_cannot_see_or_signal_another_context(
    api: Client, contexts: Contexts, language: str, victim_language: str
):
    victim, secret, marker = _victim(api, contexts, victim_language)
    worker = worker_host_pid(api, victim)
    targets = sorted(unit_pids(worker) | set(pids_with_marker(marker)))
    assert worker in targets and len(targets) >= 3
    attacker = contexts.new(language)
    # its host pids do not name its processes here: ESRCH
    if language == "python":
        outcome = py_value(api, PY_SIGNAL.format(pids=targets), context_id=attacker)
        listing = py_value(api, "sorted(__import__('os').listdir('/proc'))", context_id=attacker)
        refused = {3, 1}  # ESRCH, EPERM
    else:
        outcome = ts_json(api, TS_SIGNAL.format(pids=targets), context_id=attacker)
        listing = ts_json(
            api, "return require('node:fs').readdirSync('/proc')", context_id=attacker
        )
        refused = {"ESRCH", "EPERM"}
    assert not [key for key, result in outcome.items() if result not in refused], outcome
    assert not set(map(str, targets)) & set(listing)
    for pid in targets:
        assert alive(pid), pid
    _victim_intact(api, victim, secret, marker)


PY_FILES = """
import os
cwd = {cwd!r}
outcome = {{}}
for name, action in [
    ('list', lambda: os.listdir(cwd)),
    ('read', lambda: open(os.path.join(cwd, 'secret.txt')).read()),
    ('write', lambda: open(os.path.join(cwd, 'planted.txt'), 'w').write('x')),
    ('append', lambda: open(os.path.join(cwd, 'secret.txt'), 'a').write('x')),
    ('remove', lambda: os.unlink(os.path.join(cwd, 'secret.txt'))),
    ('chdir', lambda: os.chdir(cwd)),
]:
    try:
        action()
        outcome[name] = 'done'
    except OSError as exc:
        outcome[name] = exc.errno
os.chdir(os.environ['HOME'])
outcome
"""

TS_FILES = """
const fs = require('node:fs');
const path = require('node:path');
const cwd = {cwd!r};
const outcome = {{}};
const actions = {{
  list: () => fs.readdirSync(cwd),
  read: () => fs.readFileSync(path.join(cwd, 'secret.txt'), 'utf8'),
  write: () => fs.writeFileSync(path.join(cwd, 'planted.txt'), 'x'),
  append: () => fs.appendFileSync(path.join(cwd, 'secret.txt'), 'x'),
  remove: () => fs.unlinkSync(path.join(cwd, 'secret.txt')),
  chdir: () => process.chdir(cwd),
}};
for (const [name, action] of Object.entries(actions)) {{
  try {{ action(); outcome[name] = 'done'; }} catch (err) {{ outcome[name] = err.code; }}
}}
process.chdir(process.env.HOME);
return outcome;
"""


@pytest.mark.parametrize("language", LANGUAGES)
def test_cannot_touch_another_contexts_work_directory(
    api: Client, contexts: Contexts, language: str
):
    victim, secret, marker = _victim(api, contexts, "python")
    cwd = describe(api, victim)["cwd"]
    attacker = contexts.new(language)
    if language == "python":
        outcome = py_value(api, PY_FILES.format(cwd=cwd), context_id=attacker)
    else:
        outcome = ts_json(api, TS_FILES.format(cwd=cwd), context_id=attacker)
    assert set(outcome) == {"list", "read", "write", "append", "remove", "chdir"}
    assert "done" not in outcome.values(), outcome
    _victim_intact(api, victim, secret, marker)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_new_context_cannot_adopt_another_contexts_directory(
    api: Client, contexts: Contexts, language: str
):
    victim, secret, marker = _victim(api, contexts, "python")
    cwd = describe(api, victim)["cwd"]
    response = api.post("/contexts", json={"language": language, "cwd": cwd})
    if response.status_code == 201:  # accepted: then it still must not reach the files
        contexts.ids.append(response.json()["id"])
        attacker = response.json()["id"]
        if language == "python":
            outcome = py_value(api, PY_FILES.format(cwd=cwd), context_id=attacker)
        else:
            outcome = ts_json(api, TS_FILES.format(cwd=cwd), context_id=attacker)
        assert outcome["read"] != "done" and outcome["write"] != "done", outcome
    else:
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["field"] == "cwd"
    _victim_intact(api, victim, secret, marker)
