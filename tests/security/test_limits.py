"""5. Resource limits per context (memory, processes/threads, file size, open files): defaults,
settings, clear errors, and neither the server nor another context goes down."""

from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path

import pytest

from tests.conftest import Client, Server
from tests.security.conftest import (
    SMALL_LIMITS,
    Bystanders,
    Contexts,
    MiB,
    assert_healthy,
    cgroup_dirs,
    isolation,
    py_value,
    run_ok,
    skip_unless_full,
    start_server,
    status,
    ts_json,
    worker_host_pid,
)

LANGUAGES = ["python", "typescript"]


def _cgroup_limits(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for directory in cgroup_dirs(pid):
        for name, key in (
            ("memory.limit_in_bytes", "memory"),
            ("memory.max", "memory"),
            ("pids.max", "pids"),
        ):
            path = directory / name
            if path.exists():
                found[key] = int(path.read_text().strip())
    return found


def _rlimits(api: Client, context_id: str) -> dict[str, int]:
    language = api.get(f"/contexts/{context_id}").json()["language"]
    if language == "python":
        text = py_value(api, "open('/proc/self/limits').read()", context_id=context_id)
    else:
        text = ts_json(
            api,
            "return require('node:fs').readFileSync('/proc/self/limits', 'utf8')",
            context_id=context_id,
        )
    limits = {}
    for line in text.splitlines()[1:]:
        match = re.match(r"(.+?)\s{2,}(\S+)\s+(\S+)", line)
        if match:
            soft = match.group(2)
            limits[match.group(1).strip()] = -1 if soft == "unlimited" else int(soft)
    return limits


def _check_applied(client: Client, server: Server, expected: dict[str, int]) -> None:
    assert isolation(server)["limits"] == expected
    made = Contexts(client)
    try:
        for language in LANGUAGES:
            context_id = made.new(language)
            worker = worker_host_pid(client, context_id)
            assert _cgroup_limits(worker) == {
                "memory": expected["memory_bytes"],
                "pids": expected["pids"],
            }
            limits = _rlimits(client, context_id)
            assert limits["Max file size"] == expected["file_size_bytes"]
            assert limits["Max open files"] == expected["open_files"]
    finally:
        made.close()


def test_small_limits_are_applied(limited: Server, api: Client):
    _check_applied(
        api,
        limited,
        {"memory_bytes": 256 * MiB, "pids": 64, "file_size_bytes": 16 * MiB, "open_files": 256},
    )
    assert SMALL_LIMITS["memory_limit_mb"] == 256


def test_default_limits_are_2g_256_1g_1024(server: Server):
    """The session's default server: no limit settings at all."""
    skip_unless_full(server)
    with server.client() as client:
        _check_applied(
            client,
            server,
            {"memory_bytes": 2 << 30, "pids": 256, "file_size_bytes": 1 << 30, "open_files": 1024},
        )


MEMORY_BOMBS = {
    "python-bytes": ("python", "x = b'x' * (512 << 20)"),
    "python-list": ("python", "hog = []\nwhile True:\n    hog.append(' ' * 10**6)"),
    "python-numpy": ("python", "import numpy as np\nhog = np.ones((64 << 20,))"),
    "ts-typed-array": ("typescript", "const big = new Uint8Array(3 * 2 ** 30); big.fill(1); 1"),
    "ts-growing-buffers": (
        "typescript",
        "const hog: Uint8Array[] = [];\nfor (;;) hog.push(new Uint8Array(32 << 20).fill(7));",
    ),
    "ts-js-heap": (
        "typescript",
        "const hog: object[] = [];\nfor (;;) hog.push({ n: Math.random(), s: 'y'.repeat(64) + hog.length });",
    ),
}


@pytest.mark.parametrize("bomb", sorted(MEMORY_BOMBS))
def test_memory_bomb_gets_a_memory_error(
    limited: Server, api: Client, bystanders: Bystanders, contexts: Contexts, bomb: str
):
    language, code = MEMORY_BOMBS[bomb]
    context_id = contexts.new(language)
    run_ok(
        api, "var before = 1" if language == "typescript" else "before = 1", context_id=context_id
    )
    worker = worker_host_pid(api, context_id)
    assert _cgroup_limits(worker)["memory"] == 256 * MiB
    server_rss = _rss_mb(limited.process.pid)
    running = concurrent.futures.ThreadPoolExecutor(1).submit(
        api.run, code, context_id=context_id, timeout_ms=20000
    )
    try:
        body = running.result(timeout=10)
    except concurrent.futures.TimeoutError:
        # no answer after 10 s: describe what the context's processes are doing
        snapshot = _memory_snapshot(worker)
        body = running.result()
        raise AssertionError(f"memory bomb not stopped after 10 s: {body}\n{snapshot}") from None
    error = body["error"]
    assert error is not None, body
    text = f"{error['name']}: {error['value']}"
    assert re.search(r"MemoryError|out of memory|allocation failed", text, re.I), text
    assert_healthy(limited)
    assert _rss_mb(limited.process.pid) < server_rss + 100  # the server did not hold the bomb
    bystanders.check()
    # the context answers again (a fresh process if the old one was killed)
    after = api.run("1 + 1", context_id=context_id)
    assert after["error"] is None and after["items"][0]["text"] == "2", after


def _memory_snapshot(worker: int) -> str:
    lines = [f"worker {worker} cgroups: {_read_text(f'/proc/{worker}/cgroup')!r}"]
    for directory in cgroup_dirs(worker):
        for name in (
            "memory.usage_in_bytes",
            "memory.limit_in_bytes",
            "memory.failcnt",
            "memory.oom_control",
            "memory.max",
            "memory.events",
            "pids.current",
        ):
            if (directory / name).exists():
                lines.append(f"{directory / name}: {_read_text(directory / name)!r}")
        procs = _read_text(directory / "cgroup.procs").split()
        for pid in procs:
            fields = status(int(pid))
            lines.append(
                f"  pid {pid} {fields.get('Name')} {fields.get('State')} rss {fields.get('VmRSS')}"
                f" wchan {_read_text(f'/proc/{pid}/wchan')!r}"
            )
    return "\n".join(lines)


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        return f"<{exc.strerror}>"


def _rss_mb(pid: int) -> float:
    return int(status(pid)["VmRSS"].split()[0]) / 1024


PY_SPAWN = """
import subprocess, threading, time
children, error = [], None
try:
    for _ in range(200):
        children.append(subprocess.Popen(['sleep', '4242.51']))
except OSError as exc:
    error = (type(exc).__name__, exc.errno, str(exc))
count = len(children)
for child in children:
    child.kill()
    child.wait()
(count, error)
"""

PY_THREADS = """
import threading
stop = threading.Event()
threads, error = [], None
try:
    for _ in range(200):
        thread = threading.Thread(target=stop.wait)
        thread.start()
        threads.append(thread)
except RuntimeError as exc:
    error = str(exc)
count = len(threads)
stop.set()
for thread in threads:
    thread.join()
(count, error)
"""

TS_SPAWN = """
const cp = require('node:child_process');
const children = [];
const errors = [];
for (let i = 0; i < 200; i++) {
  try {
    const child = cp.spawn('sleep', ['4242.52']);
    child.on('error', (err) => errors.push(err.code));
    children.push(child);
  } catch (err) { errors.push(err.code); }
}
await new Promise((resolve) => setTimeout(resolve, 500));
const started = children.filter((c) => c.pid !== undefined).length;
for (const c of children) { try { c.kill('SIGKILL'); } catch (err) {} }
return {started, errors: [...new Set(errors)]};
"""


def test_process_limit_python(limited: Server, api: Client, contexts: Contexts):
    context_id = contexts.new("python")
    count, error = py_value(api, PY_SPAWN, context_id=context_id)
    assert error is not None and count < 64, (count, error)
    name, errno, message = error
    assert errno == 11 and name == "BlockingIOError", error  # EAGAIN from fork/clone
    assert "Resource temporarily unavailable" in message
    count, error = py_value(api, PY_THREADS, context_id=context_id)
    assert count < 64 and error and "can't start new thread" in error, (count, error)
    # the limit is per context: another context still starts processes
    other = contexts.new("python")
    run_ok(api, "import subprocess\nsubprocess.run(['true'], check=True)", context_id=other)
    assert_healthy(limited)


def test_process_limit_typescript(limited: Server, api: Client, contexts: Contexts):
    result = ts_json(api, TS_SPAWN, context_id=contexts.new("typescript"))
    assert result["started"] < 64, result
    assert "EAGAIN" in result["errors"], result
    assert_healthy(limited)


PY_FSIZE = """
import os
outcome = {}
for path in ('big.bin', '/tmp/big.bin'):
    try:
        with open(path, 'wb') as f:
            f.write(b'x' * (17 << 20))
        outcome[path] = 'written'
    except OSError as exc:
        outcome[path] = (exc.errno, exc.strerror)
    outcome[path + ' size'] = os.path.getsize(path)
outcome
"""

TS_FSIZE = """
const fs = require('node:fs');
const outcome = {};
for (const path of ['big.bin', '/tmp/big.bin']) {
  try { fs.writeFileSync(path, Buffer.alloc(17 << 20, 120)); outcome[path] = 'written'; }
  catch (err) { outcome[path] = err.code; }
  outcome[path + ' size'] = fs.statSync(path).size;
}
return outcome;
"""


@pytest.mark.parametrize("language", LANGUAGES)
def test_file_size_limit(limited: Server, api: Client, contexts: Contexts, language: str):
    context_id = contexts.new(language)
    if language == "python":
        outcome = py_value(api, PY_FSIZE, context_id=context_id)
        expected = [27, "File too large"]  # EFBIG
    else:
        outcome = ts_json(api, TS_FSIZE, context_id=context_id)
        expected = "EFBIG"
    for path in ("big.bin", "/tmp/big.bin"):
        assert (
            list(outcome[path]) == expected if language == "python" else outcome[path] == expected
        )
        assert outcome[path + " size"] <= 16 * MiB
    cwd = api.get(f"/contexts/{context_id}").json()["cwd"]
    assert Path(cwd, "big.bin").stat().st_size <= 16 * MiB
    # the worker survived (SIGXFSZ did not kill it) and keeps answering
    assert api.run("1 + 1", context_id=context_id)["execution_count"] == 2
    assert_healthy(limited)


PY_NOFILE = """
files, error = [], None
try:
    for i in range(2000):
        files.append(open('/dev/null'))
except OSError as exc:
    error = exc.errno
count = len(files)
for f in files:
    f.close()
(count, error)
"""

TS_NOFILE = """
const fs = require('node:fs');
const fds = [];
let error = null;
try { for (let i = 0; i < 2000; i++) fds.push(fs.openSync('/dev/null', 'r')); }
catch (err) { error = err.code; }
for (const fd of fds) fs.closeSync(fd);
return {count: fds.length, error};
"""


@pytest.mark.parametrize("language", LANGUAGES)
def test_open_files_limit(limited: Server, api: Client, contexts: Contexts, language: str):
    context_id = contexts.new(language)
    if language == "python":
        count, error = py_value(api, PY_NOFILE, context_id=context_id)
        assert error == 24, (count, error)  # EMFILE
    else:
        result = ts_json(api, TS_NOFILE, context_id=context_id)
        count, error = result["count"], result["error"]
        assert error == "EMFILE", result
    assert 200 < count < 256, count
    assert api.run("1 + 1", context_id=context_id)["error"] is None
    assert_healthy(limited)


def test_js_heap_limit_gets_a_memory_error():
    """With room above V8's own heap cap (3/4 of the limit), V8 hits its cap before the
    cgroup does and aborts the process; the error must still say it ran out of memory."""
    server = start_server(**{**SMALL_LIMITS, "memory_limit_mb": 768, "pool_python": 0})
    try:
        skip_unless_full(server)
        with server.client() as client:
            context_id = client.context("typescript")
            body = client.run(
                MEMORY_BOMBS["ts-js-heap"][1], context_id=context_id, timeout_ms=60000
            )
            error = body["error"]
            assert error is not None and error["name"] == "ContextDied", body
            text = f"{error['name']}: {error['value']}"
            assert re.search(r"out of memory", text, re.I), text
            assert client.run("1 + 1", context_id=context_id)["items"][0]["text"] == "2"
        assert_healthy(server)
    finally:
        server.stop()
        server.cleanup()
