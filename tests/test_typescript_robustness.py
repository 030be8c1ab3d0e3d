"""TypeScript contexts whose code breaks what the worker itself relies on: globals and
built-in methods replaced or deleted, a worker that dies while idle (told as Python tells
it). The execution answers normally and the context keeps its state, or the loss is told
completely."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Client, Server
from tests.security.conftest import wait_until


@pytest.fixture
def ts(client: Client) -> Iterator[str]:
    context_id = client.context("typescript")
    yield context_id
    client.delete(f"/contexts/{context_id}")


SABOTAGE = {
    "delete-JSON": "delete globalThis.JSON",
    "JSON-throws": "JSON.stringify = JSON.parse = () => { throw 1 }",
    "no-Promise": "globalThis.Promise = undefined",
    "Object-methods": (
        "Object.keys = Object.entries = Object.defineProperty = Object.getPrototypeOf ="
        " () => { throw 1 }"
    ),
    "Array-methods": (
        "for (const m of ['map', 'push', 'shift', 'join', 'find', 'includes', 'splice'])"
        " Array.prototype[m] = () => { throw 1 };\n"
        "Array.prototype[Symbol.iterator] = function* () { throw 1 }"
    ),
    "String-and-RegExp-methods": (
        "for (const m of ['split', 'slice', 'includes', 'replace', 'charCodeAt', 'toWellFormed'])"
        " String.prototype[m] = () => { throw 1 };\n"
        "RegExp.prototype.exec = () => null"
    ),
    "delete-console-process-Reflect": (
        "delete globalThis.console; delete globalThis.process; delete globalThis.Reflect;"
        " delete globalThis.Atomics; delete globalThis.Buffer; delete globalThis.Symbol"
    ),
    "Function-apply-call": "Function.prototype.apply = Function.prototype.call = () => { throw 1 }",
    "Promise-then": "Promise.prototype.then = () => { throw 1 }",
    "Map-Set-methods": "Map.prototype.set = Set.prototype.add = Set.prototype.delete = () => { throw 1 }",
    "toJSON-on-prototypes": "Object.prototype.toJSON = Array.prototype.toJSON = () => { throw 1 }",
    "process-listeners-removed": "process.removeAllListeners()",
    "typed-arrays-Buffer-fs": (
        "const TA = Object.getPrototypeOf(Uint8Array.prototype);"
        " TA.set = TA.subarray = () => { throw 1 }; Buffer.from = () => { throw 1 };"
        " require('node:fs').writeSync = () => { throw 1 }"
    ),
}


@pytest.mark.parametrize("sabotage", SABOTAGE.values(), ids=SABOTAGE.keys())
def test_replaced_built_ins_do_not_break_the_worker(client: Client, ts: str, sabotage: str) -> None:
    client.run("let kept = 'k'", context_id=ts)
    body = client.run(f"{sabotage};\n'sabotaged'", context_id=ts, timeout_ms=5000)
    assert body["error"] is None, body
    assert body["items"] == [{"is_primary": True, "text": "'sabotaged'"}]
    again = "const kept: string = 'again';\nsetTimeout(() => {}, 1);\ndisplay({ 'text/plain': 'shown' });\nkept"
    later = [
        client.run(code, context_id=ts, timeout_ms=5000, env_vars={"CELLBOX_ENV": "1"})
        for code in ("kept", again, "null.x")
    ]
    assert [b["execution_count"] for b in later] == [3, 4, 5], later
    assert later[0]["items"] == [{"is_primary": True, "text": "'k'"}], later[0]
    assert later[1]["items"] == [
        {"is_primary": False, "text": "shown"},
        {"is_primary": True, "text": "'again'"},
    ], later[1]
    assert later[2]["error"]["name"] == "TypeError", later[2]
    assert "null" in later[2]["error"]["value"]


IDLE_DEATHS = {
    "typescript-exit": (
        "typescript",
        "setTimeout(() => process.exit(3), 200); 'armed'",
        "exited with code 3",
    ),
    "typescript-abort": (
        "typescript",
        "setTimeout(() => process.abort(), 200); 'armed'",
        "was killed by SIGABRT (it aborted",
    ),
    "python-exit": (
        "python",
        "import os, threading\nthreading.Timer(0.2, os._exit, (3,)).start()",
        "exited with code 3",
    ),
    "python-abort": (
        "python",
        "import os, threading\nthreading.Timer(0.2, os.abort).start()",
        "was killed by SIGABRT (it aborted",
    ),
}


@pytest.mark.parametrize(
    ("language", "code", "cause"), IDLE_DEATHS.values(), ids=IDLE_DEATHS.keys()
)
def test_a_death_while_idle_is_told_whole_and_the_count_starts_again_at_1(
    server: Server, client: Client, language: str, code: str, cause: str
) -> None:
    """Both languages alike: the answer that tells of the loss names the cause completely
    and carries execution_count 1 (never 0); the first execution that runs is 1 too."""
    context_id = client.context(language)
    try:
        define = "let x = 1" if language == "typescript" else "x = 1"
        assert client.run(define, context_id=context_id)["error"] is None
        # armed by the second cell, which is answered long before its timer fires
        armed = client.run(code, context_id=context_id)
        assert armed["error"] is None and armed["execution_count"] == 2, armed
        assert wait_until(lambda: f"{context_id} {cause}" in server.read_log())
        told = client.run("x", context_id=context_id)
        assert told["error"]["name"] == "ContextDied", told
        value = told["error"]["value"]
        assert value.startswith(f"the context's process {cause}"), value
        assert "while it was idle: its state" in value and "this code was NOT run" in value
        assert value.endswith("(execution_count starts again at 1)."), value  # nothing cut
        assert told["execution_count"] == 1
        fresh = client.run(
            "typeof x" if language == "typescript" else "'x' in globals()", context_id=context_id
        )
        assert fresh["items"][0]["text"] in {"'undefined'", "False"}, fresh
        assert fresh["execution_count"] == 1
    finally:
        client.delete(f"/contexts/{context_id}")


def test_output_that_fills_the_socket_arrives_whole_and_before_the_value(
    client: Client, ts: str
) -> None:
    """The last frames of an execution may be written by the worker's main thread while the
    socket is still full of its output: nothing is lost or reordered."""
    code = (
        "for (let i = 0; i < 300; i++) console.log(String(i).padStart(5, '0') + 'x'.repeat(9994));"
        " 'end'"
    )
    for _ in range(3):
        body = client.run(code, context_id=ts)
        lines = body["logs"]["stdout"]
        assert [line[:5] for line in lines] == [f"{i:05d}" for i in range(300)]
        assert all(len(line) == 9999 for line in lines)
        assert body["items"] == [{"is_primary": True, "text": "'end'"}], body["items"]


def test_a_cells_own_tojson_still_applies_to_its_code(client: Client, ts: str) -> None:
    # taken off while the worker writes its frames, put back before the cell's code runs
    client.run("Object.prototype.toJSON = function () { return 'mine' }", context_id=ts)
    body = client.run("let shown = JSON.stringify({ a: 1 }); shown", context_id=ts)
    assert body["items"] == [{"is_primary": True, "text": "'\"mine\"'"}], body
    again = client.run("const shown = JSON.stringify({ b: 2 }); shown", context_id=ts)  # a retry
    assert again["items"] == [{"is_primary": True, "text": "'\"mine\"'"}], again


def test_background_errors_are_told_after_process_listeners_are_removed(
    client: Client, ts: str
) -> None:
    client.run("let kept = 1; process.removeAllListeners()", context_id=ts)
    body = client.run(
        "setTimeout(() => { throw new Error('later') }); Promise.reject(new Error('now'));\n"
        "await new Promise((r) => setTimeout(r, 20)); kept",
        context_id=ts,
    )
    assert body["error"] is None, body
    assert body["items"] == [{"is_primary": True, "text": "1"}]
    told = [line for line in body["logs"]["stderr"] if not line.startswith("    at ")]
    assert told == ["Uncaught (in promise) Error: now", "Uncaught Error: later"], body


@pytest.mark.parametrize(
    "code",
    [
        "throw { get message() { throw 1 }, get stack() { throw 2 } }",
        "Promise.reject(new Proxy({}, { get() { throw 3 }, getPrototypeOf() { throw 4 } }))",
    ],
    ids=["getters-throw", "proxy-traps-throw"],
)
def test_a_thrown_value_whose_reading_throws_is_still_answered(
    client: Client, ts: str, code: str
) -> None:
    body = client.run(code, context_id=ts, timeout_ms=5000)
    assert body["error"] is not None and body["error"]["name"] == "Error", body
    assert body["error"]["traceback"].startswith("Uncaught "), body
    assert client.run("1", context_id=ts)["items"] == [{"is_primary": True, "text": "1"}]
