"""Code that damages the Python worker it runs in: the worker's control socket (forged and
malformed frames), fds 1/2 and ``sys.stdout``/``sys.stderr``, the builtins. Each execution
still gets its own answer, the context recovers (or says that its state was lost), other
contexts are untouched and the server stays up."""

from __future__ import annotations

import pytest

from tests.conftest import Client, Server
from tests.security.conftest import wait_until
from tests.test_metrics import scrape, value

# Writes frames on the worker's control socket as its own sender would, knowing all a
# forger could: the socket and the id of the running execution.
FORGE = """
from cellbox.workers.python import worker as _w
def send_raw(payload):
    _w._WORKER.outbox.send_now(len(payload).to_bytes(4, "big") + payload)
def send(message):
    import json
    send_raw(json.dumps(message).encode())
def running_id():
    return _w._WORKER.outbox.execution_id
"""


def _answer(client: Client, context_id: str, code: str) -> dict:
    body = client.run(code, context_id=context_id, timeout_ms=20_000)
    return {**body, "items": [i.get("text") for i in body["items"]]}


def test_a_done_written_by_the_code_does_not_shift_later_answers(client: Client):
    ctx = client.context()
    client.run("x = 1\n" + FORGE, context_id=ctx)
    # a forged `done` with the running execution's id ends its answer early ...
    code = "send({'type': 'done', 'id': running_id()})\nimport time\ntime.sleep(0.3)\n"
    body = _answer(client, ctx, code + "print('late')\n'late value'")
    assert body["error"] is None and body["items"] == [], body
    # ... and what the worker still sends for it never reaches the executions after it
    for n in (2, 3):
        body = _answer(client, ctx, f"x + {n}")
        assert body["items"] == [str(1 + n)], body
        assert body["logs"] == {"stdout": [], "stderr": []}, body
        assert body["error"] is None and body["execution_count"] == 1 + n
    # frames with another execution's id are dropped
    forged = (
        "send({'type': 'result', 'id': running_id() + 1, 'bundle': {'text/plain': 'forged'}})\n"
        "send({'type': 'done', 'id': 0})\n"
        "x"
    )
    body = _answer(client, ctx, forged)
    assert body["items"] == ["1"] and body["error"] is None, body
    client.delete(f"/contexts/{ctx}")


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b"\xffnot json", b'{"type": "stdout"}', b'{"type": "bogus", "id": 1}'],
)
def test_a_malformed_frame_restarts_that_context_alone(client: Client, payload: bytes):
    ctx, other = client.context(), client.context()
    client.run("y = 5", context_id=other)
    client.run("x = 1\n" + FORGE, context_id=ctx)
    body = client.run(f"send_raw({payload!r})\nimport time\ntime.sleep(10)", context_id=ctx)
    assert body["error"]["name"] == "ContextDied", body
    assert "misbehaved" in body["error"]["value"] and "state was lost" in body["error"]["value"]
    body = _answer(client, ctx, "'x' in globals()")
    assert body["items"] == ["False"] and body["execution_count"] == 1, body
    assert _answer(client, other, "y")["items"] == ["5"]
    assert client.get("/healthz").status_code == 200
    for context_id in (ctx, other):
        client.delete(f"/contexts/{context_id}")


def test_a_malformed_frame_while_idle_is_told_by_the_next_execution(server: Server, client: Client):
    node = client.get("/info").json()["node"]
    ctx = client.context()
    code = "x = 1\n" + FORGE + "import threading\nthreading.Timer(0.2, send_raw, (b'[]',)).start()"
    assert client.run(code, context_id=ctx)["error"] is None
    assert wait_until(lambda: f"of {ctx} misbehaved" in server.read_log(), timeout=10)
    before = scrape(client)
    body = client.run("x", context_id=ctx)
    assert body["error"]["name"] == "ContextDied", body
    assert "misbehaved" in body["error"]["value"] and "NOT run" in body["error"]["value"]
    died = {"node": node, "language": "python", "outcome": "died"}
    grew = value(scrape(client), "cellbox_executions_total", **died)
    assert grew - value(before, "cellbox_executions_total", **died) == 1
    assert _answer(client, ctx, "'x' in globals()")["items"] == ["False"]
    client.delete(f"/contexts/{ctx}")


CHECK_OUTPUT = (
    "import subprocess, sys\n"
    "subprocess.run('echo fd-out; echo fd-err >&2', shell=True)\n"
    "print('py-out')\n"
    "print('py-err', file=sys.stderr)\n"
    "x"
)


@pytest.mark.parametrize(
    "damage",
    [
        "import os\nos.close(1)\nos.close(2)",
        "import os\nnull = os.open(os.devnull, os.O_WRONLY)\nos.dup2(null, 1)\nos.dup2(null, 2)",
        "import os, sys\nos.close(1)\nsys.stdout = open('/dev/null', 'w')",
        "import sys\nsys.stdout.close()\nsys.stderr.close()\nsys.stdout = sys.stderr = None",
        "import sys\nsys.displayhook = lambda value: None",
    ],
)
def test_the_output_is_whole_again_after_code_closed_or_replaced_it(
    client: Client, ctx: str, damage: str
):
    client.run("x = 1", context_id=ctx)
    assert client.run(damage, context_id=ctx)["execution_count"] == 2
    for count in (3, 4):
        body = _answer(client, ctx, CHECK_OUTPUT)
        assert body["error"] is None and body["items"] == ["1"], body
        assert sorted(body["logs"]["stdout"]) == ["fd-out", "py-out"], body
        assert sorted(body["logs"]["stderr"]) == ["fd-err", "py-err"], body
        assert body["execution_count"] == count


@pytest.mark.parametrize(
    ("damage", "probe", "expected"),
    [
        # a deleted built-in comes back once the cell is over: only the worker would miss it
        ("del builtins.len", "len([])", "0"),
        ("del builtins.isinstance", "isinstance(1, int)", "True"),
        # a replaced one is the code's choice, for its cells and its libraries alike
        ("builtins.print = None", "print(1)", "TypeError"),
    ],
)
def test_changed_builtins_do_not_break_the_worker(
    client: Client, ctx: str, damage: str, probe: str, expected: str
):
    client.run("x = 1", context_id=ctx)
    body = client.run(f"import builtins\n{damage}\nraise ValueError('mine')", context_id=ctx)
    assert body["error"]["name"] == "ValueError" and body["error"]["value"] == "mine", body
    assert body["execution_count"] == 2
    body = _answer(client, ctx, "x + 1")
    assert body["items"] == ["2"] and body["error"] is None and body["execution_count"] == 3
    body = _answer(client, ctx, "x / 0")
    assert body["error"]["name"] == "ZeroDivisionError", body
    body = _answer(client, ctx, probe)
    assert expected in body["items"] or body["error"]["name"] == expected, body


def test_builtins_are_shared_with_the_modules_the_code_imports(client: Client, ctx: str):
    """As in Jupyter: what the code puts in builtins reaches the modules it imports."""
    module = "def debug():\n    return DEBUG\ndef say():\n    print('said')\n"
    client.run(f"open('helper.py', 'w').write({module!r})", context_id=ctx)
    code = "import builtins, helper\nbuiltins.DEBUG = 7\n_print = print\n"
    code += "builtins.print = lambda *a: _print('patched', *a)\nhelper.say()\nhelper.debug()"
    body = client.run(code, context_id=ctx)
    assert body["error"] is None and body["logs"]["stdout"] == ["patched said"], body
    assert body["items"][0]["text"] == "7"


# The TypeScript worker's code can reach its socket too (the fd is on its command line).
TS_SEND = (
    "const fs = require('fs');\n"
    "const sock = Number(process.argv[process.argv.indexOf('--fd') + 1]);\n"
    "function sendRaw(text) {\n"
    "  const body = Buffer.from(text);\n"
    "  const head = Buffer.alloc(4);\n"
    "  head.writeUInt32BE(body.length);\n"
    "  fs.writeSync(sock, Buffer.concat([head, body]));\n"
    "}\n"
)


def test_typescript_forged_frames_are_dropped_or_end_the_worker(client: Client):
    ctx = client.context("typescript")
    client.run("let x = 1;\n" + TS_SEND, context_id=ctx)
    forged = 'sendRaw(JSON.stringify({type: "done", id: 0}));\nx + 1'
    body = _answer(client, ctx, forged)
    assert body["items"] == ["2"] and body["error"] is None, body
    body = client.run(
        "sendRaw('[1, 2]');\nawait new Promise((r) => setTimeout(r, 10000));", context_id=ctx
    )
    assert body["error"]["name"] == "ContextDied" and "misbehaved" in body["error"]["value"], body
    body = _answer(client, ctx, "typeof x")
    assert body["items"] == ["'undefined'"] and body["execution_count"] == 1, body
    client.delete(f"/contexts/{ctx}")
