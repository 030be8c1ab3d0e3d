"""8. Hostile behaviour is contained: fork bombs, SIGSTOP, segfaults, killing every pid in
sight, writing into the installation, floods of output, huge and deeply nested bodies. Each
gets an error or a capped result; the server stays healthy and other contexts keep their state.
(Memory bombs, typed arrays included, are in test_limits.py.)"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Client, Server
from tests.security.conftest import (
    Bystanders,
    Contexts,
    MiB,
    assert_healthy,
    cgroup_dirs,
    pids_with_marker,
    run_ok,
    status,
    wait_until,
    worker_host_pid,
)

LANGUAGES = ["python", "typescript"]


def _survived(server: Server, bystanders: Bystanders) -> None:
    assert_healthy(server)
    bystanders.check()


# --------------------------------------------------------------------------- fork bombs

FORK_BOMBS = {
    "python-os-fork": ("python", "import os\nwhile True:\n    os.fork()"),
    "python-shell": (
        "python",
        "import subprocess\nsubprocess.Popen(['sh', '-c', 'b() { b | b & }; b'])\n"
        "import time\ntime.sleep(2)",
    ),
    "typescript-shell": (
        "typescript",
        "require('node:child_process').spawn('sh', ['-c', 'b() { b | b & }; b']);\n"
        "await new Promise((resolve) => setTimeout(resolve, 2000));",
    ),
}


@pytest.mark.parametrize("bomb", sorted(FORK_BOMBS))
def test_fork_bomb_is_contained(
    limited: Server, api: Client, bystanders: Bystanders, contexts: Contexts, bomb: str
):
    language, code = FORK_BOMBS[bomb]
    context_id = contexts.new(language)
    worker = worker_host_pid(api, context_id)
    counters = [d / "pids.current" for d in cgroup_dirs(worker) if (d / "pids.current").exists()]
    assert counters, cgroup_dirs(worker)
    started = time.monotonic()
    body = api.run(code, context_id=context_id, timeout_ms=4000)
    assert time.monotonic() - started < 30
    if bomb == "python-os-fork":
        assert body["error"] is not None, body  # BlockingIOError: Resource temporarily unavailable
    # while the bomb may still be ticking inside its context, everything else works
    _survived(limited, bystanders)
    for counter in counters:
        if counter.exists():
            assert int(counter.read_text()) <= 64
    response = api.delete(f"/contexts/{context_id}")
    assert response.status_code == 204
    assert wait_until(lambda: not os.path.exists(f"/proc/{worker}"), timeout=10)
    assert wait_until(lambda: not [c for c in counters if c.exists()], timeout=10)
    _survived(limited, bystanders)


# --------------------------------------------------------------------------- SIGSTOP, segfault

SIGSTOP_SELF = {
    "python": "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)",
    "typescript": "process.kill(process.pid, 'SIGSTOP')",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_sigstop_to_itself(
    limited: Server, api: Client, bystanders: Bystanders, contexts: Contexts, language: str
):
    context_id = contexts.new(language)
    started = time.monotonic()
    body = api.run(SIGSTOP_SELF[language], context_id=context_id, timeout_ms=1000)
    assert time.monotonic() - started < 15
    assert body["error"] is not None, body
    assert body["error"]["name"] in ("TimeoutError", "ContextDied"), body
    _survived(limited, bystanders)
    after = api.run("1 + 1", context_id=context_id, timeout_ms=10000)
    assert after["error"] is None and after["items"][0]["text"] == "2", after


SEGFAULT = {
    "python": "import ctypes\nctypes.string_at(0)",
    "typescript": "process.kill(process.pid, 'SIGSEGV')",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_segfault_reports_the_death_and_restarts(
    limited: Server, api: Client, bystanders: Bystanders, contexts: Contexts, language: str
):
    context_id = contexts.new(language)
    run_ok(api, "var kept = 1" if language == "typescript" else "kept = 1", context_id=context_id)
    body = api.run(SEGFAULT[language], context_id=context_id, timeout_ms=10000)
    assert body["error"]["name"] == "ContextDied", body
    assert "SIGSEGV" in body["error"]["value"], body
    _survived(limited, bystanders)
    after = api.run(
        "typeof kept" if language == "typescript" else "'kept' in globals()", context_id=context_id
    )
    assert after["execution_count"] == 1, after  # a fresh process
    assert after["items"][0]["text"] in ("False", "'undefined'"), after


# --------------------------------------------------------------------------- killing everything

KILL_ALL = {
    "python": (
        "import os, signal\n"
        "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
        "for pid in sorted((int(p) for p in os.listdir('/proc') if p.isdigit()), reverse=True):\n"
        "    if pid != os.getpid():\n"
        "        try:\n            os.kill(pid, signal.SIGKILL)\n"
        "        except OSError:\n            pass\n"
        "for pid in range(1, 70000):\n"
        "    if pid != os.getpid():\n"
        "        try:\n            os.kill(pid, signal.SIGKILL)\n"
        "        except OSError:\n            pass\n"
        "os.kill(os.getpid(), signal.SIGKILL)"
    ),
    "typescript": (
        "try { process.kill(-1, 'SIGKILL'); } catch (err) {}\n"
        "for (let pid = 70000; pid > 0; pid--) {\n"
        "  if (pid !== process.pid) { try { process.kill(pid, 'SIGKILL'); } catch (err) {} }\n"
        "}\n"
        "process.kill(process.pid, 'SIGKILL');"
    ),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_killing_every_visible_pid_hurts_only_itself(
    limited: Server, api: Client, bystanders: Bystanders, contexts: Contexts, language: str
):
    marker = f"4242.8{secrets.randbelow(10**5)}"
    neighbour = contexts.new("python")
    run_ok(
        api,
        f"import subprocess\nchild = subprocess.Popen(['sleep', '{marker}'])",
        context_id=neighbour,
    )
    context_id = contexts.new(language)
    body = api.run(KILL_ALL[language], context_id=context_id, timeout_ms=20000)
    assert body["error"] is not None and body["error"]["name"] == "ContextDied", body
    _survived(limited, bystanders)
    assert pids_with_marker(marker), "a process of another context was killed"
    assert run_ok(api, "child.poll() is None", context_id=neighbour)["items"][0]["text"] == "True"
    after = api.run("1 + 1", context_id=context_id)
    assert after["error"] is None and after["execution_count"] == 1, after


# --------------------------------------------------------------------------- the installation


@pytest.fixture
def sacrificial() -> Iterator[Path]:
    """Files of the installation (inside the venv) that user code will try to destroy:
    made for the purpose, so a failing sandbox cannot destroy the real code."""
    directory = Path(sys.prefix) / f"cellbox-sacrificial-{secrets.token_hex(4)}"
    directory.mkdir()
    (directory / "module.py").write_text("original")
    path = Path(sys.prefix) / f"{directory.name}.txt"
    path.write_text("original")
    for made in (directory, directory / "module.py", path):
        os.chmod(made, 0o777 if made.is_dir() else 0o666)  # even world-writable: read-only bind
    yield path
    path.unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


DESTROY = {
    "python": (
        "import os, shutil\n"
        "errors = []\n"
        "for action in (lambda: open({path!r}, 'w').write('owned'),\n"
        "               lambda: os.unlink({path!r}),\n"
        "               lambda: os.rename({path!r}, {path!r} + '.moved'),\n"
        "               lambda: os.chmod('/etc', 0o777),\n"
        "               lambda: shutil.rmtree({package!r}),\n"
        "               lambda: open('/etc/cellbox-owned', 'w')):\n"
        "    try:\n        action()\n        errors.append(None)\n"
        "    except OSError as exc:\n        errors.append(exc.errno)\n"
        "errors"
    ),
    "typescript": (
        "const fs = require('node:fs');\n"
        "const errors = [];\n"
        "for (const action of [() => fs.writeFileSync({path!r}, 'owned'),\n"
        "                      () => fs.unlinkSync({path!r}),\n"
        "                      () => fs.renameSync({path!r}, {path!r} + '.moved'),\n"
        "                      () => fs.chmodSync('/etc', 0o777),\n"
        "                      () => fs.rmSync({package!r}, {{ recursive: true }}),\n"
        "                      () => fs.writeFileSync('/etc/cellbox-owned', 'x')]) {{\n"
        "  try {{ action(); errors.push(null); }} catch (err) {{ errors.push(err.code); }}\n"
        "}}\n"
        "errors"
    ),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_cannot_damage_the_installation_or_etc(
    api: Client, contexts: Contexts, sacrificial: Path, language: str
):
    package = str(sacrificial.with_suffix(""))
    etc_mode = os.stat("/etc").st_mode
    code = DESTROY[language].format(path=str(sacrificial), package=package)
    body = run_ok(api, code, context_id=contexts.new(language))
    errors = body["items"][0]["text"]
    assert "None" not in errors and "null" not in errors, errors
    assert sacrificial.read_text() == "original"
    assert not Path(str(sacrificial) + ".moved").exists()
    assert (Path(package) / "module.py").read_text() == "original"
    assert os.stat("/etc").st_mode == etc_mode
    assert not os.path.exists("/etc/cellbox-owned")


# --------------------------------------------------------------------------- output floods

FLOOD = {
    "python": "import sys\nline = 'x' * (1 << 20)\nfor _ in range(300):\n    print(line)",
    "typescript": "const line = 'x'.repeat(1 << 20);\nfor (let i = 0; i < 300; i++) console.log(line);",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_printing_300_mb_is_capped(
    limited: Server, api: Client, bystanders: Bystanders, contexts: Contexts, language: str
):
    context_id = contexts.new(language)
    rss_before = _rss_mb(limited.process.pid)
    started = time.monotonic()
    response = api.post(
        "/execute", json={"code": FLOOD[language], "context_id": context_id, "timeout_ms": 60000}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert len(response.content) < 2 * MiB, len(response.content)  # cap: 1 MiB
    body = response.json()
    assert body["error"] is None, body["error"]
    kept = sum(len(line.encode()) for line in body["logs"]["stdout"])
    assert 0 < kept <= MiB
    assert body["logs"]["stderr"] and "dropped" in body["logs"]["stderr"][-1].lower(), body["logs"][
        "stderr"
    ][-1:]
    assert elapsed < 45
    assert _rss_mb(limited.process.pid) < rss_before + 150
    _survived(limited, bystanders)
    assert run_ok(api, "1 + 1", context_id=context_id)["items"][0]["text"] == "2"


def _rss_mb(pid: int) -> float:
    return int(status(pid)["VmRSS"].split()[0]) / 1024


# --------------------------------------------------------------------------- hostile requests


def test_64_mib_body_is_refused(limited: Server, api: Client, bystanders: Bystanders):
    huge = b'{"code": "' + b"x" * (64 * MiB) + b'"}'
    response = api.post("/execute", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:200]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count itself
        yield b'{"code": "'
        for _ in range(64):
            yield b"x" * MiB
        yield b'"}'

    try:
        response = api.post(
            "/execute", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413, response.text[:200]
    except httpx.WriteError:
        pass  # refused and closed before the whole body was sent: also a refusal
    _survived(limited, bystanders)


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize(
    "body",
    [
        '{"code": ' + _nested(100_000) + "}",
        '{"code": "1", "env_vars": ' + '{"a": ' * 100_000 + '"b"' + "}" * 100_000 + "}",
        '{"code": "1", "timeout_ms": ' + _nested(100_000) + "}",
        '{"code": "1", "extra": ' + _nested(100_000) + "}",
    ],
    ids=["code", "env_vars", "timeout_ms", "unknown-field"],
)
def test_deeply_nested_json_is_refused(
    limited: Server, api: Client, bystanders: Bystanders, body: str
):
    for path in ("/execute", "/execute/async", "/contexts"):
        response = api.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, response.status_code, response.text[:200])
        assert response.json()["message"] == "Invalid request"
    _survived(limited, bystanders)
