"""TypeScript/JavaScript contexts over HTTP: real persistent state, TS syntax, await, errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.conftest import STARTED, Client


@pytest.fixture
def ts(client: Client) -> Iterator[str]:
    context_id = client.context("typescript")
    yield context_id
    client.delete(f"/contexts/{context_id}")


def test_context_reports_typescript(client: Client):
    for alias in ("typescript", "TS", "javascript", "js", "Node", "bun"):
        response = client.post("/contexts", json={"language": alias})
        assert response.status_code == 201
        assert response.json()["language"] == "typescript"
        client.delete(f"/contexts/{response.json()['id']}")


@pytest.mark.parametrize("alias", ["typescript", "ts", "JavaScript", "js", "node", "BUN"])
def test_execute_with_aliases(client: Client, alias: str):
    body = client.run("1 + 1", language=alias)
    assert body["items"] == [{"is_primary": True, "text": "2"}]
    client.delete(f"/contexts/{body['context_id']}")


def test_state_persists_without_replay(client: Client, ts: str):
    first = client.run("console.log('once'); let counter = 1; const base = 10;", context_id=ts)
    assert first["logs"]["stdout"] == ["once"]
    assert first["items"] == []
    assert first["execution_count"] == 1
    second = client.run("counter += 1; counter + base", context_id=ts)
    assert second["logs"]["stdout"] == []  # the first cell's console.log never prints again
    assert second["items"] == [{"is_primary": True, "text": "12"}]
    assert second["execution_count"] == 2


def test_side_effects_are_not_repeated(client: Client, ts: str):
    client.run("globalThis.hits = 0; function hit() { return ++globalThis.hits }", context_id=ts)
    for _ in range(5):
        client.run("hit()", context_id=ts)
    assert client.run("globalThis.hits", context_id=ts)["items"][0]["text"] == "5"


def test_redeclaration(client: Client, ts: str):
    client.run(
        "let a = 1; const b = 2; class K { v = 1 }; function f() { return 1 }", context_id=ts
    )
    body = client.run(
        "let a = 10; const b = 20; class K { v = 2 }; function f() { return 2 }\na + b + new K().v + f()",
        context_id=ts,
    )
    assert body["error"] is None, body["error"]
    assert body["items"][0]["text"] == "34"


def test_typescript_syntax(client: Client, ts: str):
    code = """
interface Point { x: number; y: number }
type Pair<T> = [T, T];
enum Color { Red = 'red', Green = 'green' }
function add<T extends number>(a: T, b: T): number { return a + b }
const p: Point = { x: 1, y: 2 } as Point;
const pair: Pair<number> = [3, 4];
class Box<T> { constructor(private value: T) {} get(): T { return this.value } }
`${Color.Green}:${add(p.x, p.y)}:${new Box<string>('b').get()}:${pair[1]}`
"""
    body = client.run(code, context_id=ts)
    assert body["error"] is None, body["error"]
    assert body["items"][0]["text"] == "'green:3:b:4'"
    assert client.run("Color.Red", context_id=ts)["items"][0]["text"] == "'red'"


def test_top_level_await(client: Client, ts: str):
    body = client.run(
        "const v = await new Promise(r => setTimeout(() => r(41), 50));\nv + 1", context_id=ts
    )
    assert body["items"] == [{"is_primary": True, "text": "42"}]
    assert client.run("v", context_id=ts)["items"][0]["text"] == "41"


def test_inspect_style_text(client: Client, ts: str):
    body = client.run("({ a: 1, b: 'x', c: [1, 2] })", context_id=ts)
    assert body["items"][0]["text"] == "{ a: 1, b: 'x', c: [ 1, 2 ] }"
    assert "\x1b" not in str(body)


def test_statements_only_give_no_item(client: Client, ts: str):
    assert client.run("let q = 5;", context_id=ts)["items"] == []
    assert client.run("for (let i = 0; i < 2; i++) {}", context_id=ts)["items"] == []


def test_console_streams(client: Client, ts: str):
    body = client.run(
        "console.log('out', 1); console.info('info'); console.debug('dbg');\nconsole.error('err'); console.warn('warn')",
        context_id=ts,
    )
    assert body["logs"]["stdout"] == ["out 1", "info", "dbg"]
    assert body["logs"]["stderr"] == ["err", "warn"]


def test_display(client: Client, ts: str):
    body = client.run("display({'text/html': '<b>x</b>'}); display([1, 2]); 'end'", context_id=ts)
    assert body["items"][0]["html"] == "<b>x</b>"
    assert body["items"][0]["is_primary"] is False
    assert body["items"][1] == {"is_primary": False, "text": "[ 1, 2 ]"}
    assert body["items"][2] == {"is_primary": True, "text": "'end'"}


def test_thrown_errors(client: Client, ts: str):
    body = client.run("function boom() { throw new TypeError('bad thing') }\nboom()", context_id=ts)
    assert body["error"]["name"] == "TypeError"
    assert body["error"]["value"] == "bad thing"
    assert "boom" in body["error"]["traceback"]
    assert "\x1b" not in body["error"]["traceback"]


def test_rejected_promise(client: Client, ts: str):
    body = client.run("await Promise.reject(new RangeError('nope'))", context_id=ts)
    assert body["error"]["name"] == "RangeError"
    assert body["error"]["value"] == "nope"


def test_syntax_error(client: Client, ts: str):
    body = client.run("let = = 3", context_id=ts)
    assert body["error"]["name"] == "SyntaxError"
    assert client.run("1", context_id=ts)["items"][0]["text"] == "1"


def test_env_vars_scoped(client: Client, ts: str):
    value = 'it\'s "q"\nline2\\'
    literal = json.dumps(value)
    body = client.run(
        f"process.env.TOKEN_X === {literal}", context_id=ts, env_vars={"TOKEN_X": value}
    )
    assert body["items"][0]["text"] == "true"
    echoed = client.run(
        "const cp = require('node:child_process');\n"
        f"cp.execSync('printf %s \"$TOKEN_X\"').toString() === {literal}",
        context_id=ts,
        env_vars={"TOKEN_X": value},
    )
    assert echoed["error"] is None, echoed["error"]
    assert echoed["items"][0]["text"] == "true"
    after = client.run("process.env.TOKEN_X === undefined", context_id=ts)
    assert after["items"][0]["text"] == "true"


def test_builtin_modules(client: Client, ts: str):
    body = client.run(
        "const fs = require('node:fs'); const os = await import('node:os'); import('node:path').then(p => p.join('a', 'b'))",
        context_id=ts,
    )
    assert body["error"] is None, body["error"]
    assert body["items"][0]["text"] == "'a/b'"


def test_timeout_of_a_busy_loop_keeps_state(client: Client, ts: str):
    client.run("let kept = 7", context_id=ts)
    started = time.monotonic()
    body = client.run("while (true) {}", context_id=ts, timeout_ms=300)
    assert time.monotonic() - started < 5
    assert body["error"]["name"] == "TimeoutError"
    assert client.run("kept", context_id=ts)["items"][0]["text"] == "7"


def test_timeout_of_a_pending_await_keeps_state(client: Client, ts: str):
    client.run("let kept2 = 8", context_id=ts)
    body = client.run("await new Promise(() => {})", context_id=ts, timeout_ms=300)
    assert body["error"]["name"] == "TimeoutError"
    assert client.run("kept2", context_id=ts)["items"][0]["text"] == "8"


def test_interrupt(client: Client, ts: str):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(client.run, STARTED["typescript"] + "while (true) {}", context_id=ts)
        client.wait_started(ts)
        assert client.post(f"/contexts/{ts}/interrupt").status_code == 200
        assert running.result(timeout=10)["error"]["name"] == "Interrupted"


def test_background_errors_do_not_crash(client: Client, ts: str):
    client.run(
        "let alive = 'yes'; setTimeout(() => { throw new Error('late') }, 10)", context_id=ts
    )
    time.sleep(0.2)
    body = client.run("Promise.reject(new Error('unhandled')); alive", context_id=ts)
    assert body["items"][0]["text"] == "'yes'"
    time.sleep(0.1)
    later = client.run("alive", context_id=ts)
    stderr = " ".join(body["logs"]["stderr"] + later["logs"]["stderr"])
    assert "late" in stderr


def test_language_lock(client: Client, ts: str):
    response = client.post("/execute", json={"code": "1", "context_id": ts, "language": "python"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "language"


def test_crash_recovery(client: Client, ts: str):
    client.run("let gone = 1", context_id=ts)
    body = client.run("process.kill(process.pid, 'SIGKILL')", context_id=ts)
    assert body["error"]["name"] == "ContextDied"
    after = client.run("typeof gone", context_id=ts)
    assert after["items"][0]["text"] == "'undefined'"
    assert after["execution_count"] == 1


def test_sse(client: Client, ts: str):
    events = client.events("console.log('a'); 5", context_id=ts)
    assert events == [
        {"type": "stdout", "data": "a"},
        {"type": "result", "data": {"is_primary": True, "text": "5"}},
        {"type": "exit", "code": 0, "context_id": ts, "execution_count": 1},
    ]
