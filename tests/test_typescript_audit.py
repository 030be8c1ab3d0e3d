"""TypeScript contexts as a demanding user meets them: what an interrupted cell leaves
behind, error stacks shown as values, rejections a cell leaves unhandled, standard input."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Client


@pytest.fixture
def ts(client: Client) -> Iterator[str]:
    context_id = client.context("typescript")
    yield context_id
    client.delete(f"/contexts/{context_id}")


@pytest.mark.parametrize(
    "sleep",
    [
        "new Promise((r) => setTimeout(r, 20))",
        "new Promise((r) => setImmediate(r))",
        "require('node:timers/promises').setTimeout(20)",
        "require('node:util').promisify(setTimeout)(20)",
    ],
    ids=["setTimeout", "setImmediate", "timers-promises", "promisify"],
)
def test_a_timed_out_await_loop_stops_running(client: Client, ts: str, sleep: str) -> None:
    body = client.run(
        f"let ticks = 0;\nfor (;;) {{ await {sleep}; ticks++; if (ticks % 50 === 0) console.log('tick') }}",
        context_id=ts,
        timeout_ms=300,
    )
    assert body["error"]["name"] == "TimeoutError", body
    first = client.run("ticks", context_id=ts)
    time.sleep(0.3)
    later = client.run("ticks", context_id=ts)
    assert later["error"] is None, later
    assert later["items"] == first["items"]  # the loop no longer runs in the background
    assert later["logs"] == {"stdout": [], "stderr": []}


def test_timers_of_an_interrupted_cell_are_dropped_but_earlier_ones_run(
    client: Client, ts: str
) -> None:
    kept = client.run("let early = 0; setInterval(() => early++, 10); 'started'", context_id=ts)
    assert kept["error"] is None, kept
    body = client.run(
        "let late = 0; setInterval(() => late++, 10); await new Promise(() => {})",
        context_id=ts,
        timeout_ms=200,
    )
    assert body["error"]["name"] == "TimeoutError", body
    first = client.run("[early, late]", context_id=ts)["items"][0]["text"]
    time.sleep(0.2)
    later = client.run("[early, late]", context_id=ts)["items"][0]["text"]
    early1, late1 = (int(v) for v in first.strip("[] ").split(","))
    early2, late2 = (int(v) for v in later.strip("[] ").split(","))
    assert early2 > early1  # a cell that finished keeps its background timers
    assert late2 == late1  # the interrupted cell's stopped with it


def test_error_stacks_shown_as_values_hold_only_the_users_frames(client: Client, ts: str) -> None:
    body = client.run(
        "function inner() { return new Error('made') }\n"
        "try { null.x } catch (e) { console.log(e) }\n"
        "console.log(new Error('logged').stack)\n"
        "inner()",
        context_id=ts,
    )
    assert body["error"] is None, body
    logged = body["logs"]["stdout"]
    assert logged[0] == "TypeError: Cannot read properties of null (reading 'x')"
    assert logged[1:] == ["    at cell-1:2:12", "Error: logged", "    at cell-1:3:13"]
    assert body["items"][0]["text"] == "Error: made\n    at inner (cell-1:1:27)\n    at cell-1:4:1"
    later = client.run(
        "await new Promise((r) => setTimeout(r, 1)); setTimeout(() => console.log(new Error('t').stack)); "
        "await new Promise((r) => setTimeout(r, 20))",
        context_id=ts,
    )
    assert later["logs"]["stdout"] == ["Error: t", "    at Timeout.<anonymous> (cell-2:1:74)"], (
        later
    )


def test_a_rejection_the_cell_leaves_unhandled_is_told_by_that_cell(
    client: Client, ts: str
) -> None:
    body = client.run(
        "async function save() { throw new Error('disk full') }\nsave(); 'saved?'", context_id=ts
    )
    assert body["error"] is None, body
    assert body["items"] == [{"is_primary": True, "text": "'saved?'"}]
    assert body["logs"]["stderr"] == [
        "Uncaught (in promise) Error: disk full",
        "    at save (cell-1:1:31)",
        "    at cell-1:2:1",
    ]
    after = client.run("Promise.reject(7); 'again'", context_id=ts)
    assert after["logs"]["stderr"] == ["Uncaught (in promise) 7"], after
    assert client.run("1", context_id=ts)["logs"] == {"stdout": [], "stderr": []}


def test_standard_input_never_hangs(client: Client, ts: str) -> None:
    asked = client.run(
        "const readline = require('node:readline/promises');\n"
        "const rl = readline.createInterface({ input: process.stdin, output: process.stdout });\n"
        "await rl.question('name? ')",
        context_id=ts,
        timeout_ms=10_000,
    )
    assert asked["error"]["name"] == "StdinUnavailableError", asked
    assert "without standard input" in asked["error"]["value"]
    called = client.run(
        "require('node:readline').createInterface({ input: process.stdin })"
        ".question('age? ', (a) => console.log(a))",
        context_id=ts,
        timeout_ms=10_000,
    )
    assert called["error"]["name"] == "StdinUnavailableError", called
    read = "const lines = []; for await (const l of require('node:readline').createInterface({ input: process.stdin })) lines.push(l); lines"
    for _ in range(2):  # input ends at once for every reader, not only for the first
        body = client.run(read, context_id=ts, timeout_ms=10_000)
        assert body["error"] is None, body
        assert body["items"] == [{"is_primary": True, "text": "[]"}]


@pytest.mark.parametrize(
    ("before", "again"),
    [
        ("function make() { return 1 }", "class make { v = 2 }\nnew make().v"),
        ("let total = 1", "const total = 2;\ntypeof total === 'number' ? total : -1"),
        ("const kind = 'a'", "async function kind() { return 3 }\nawait kind()"),
        ("let [lo, hi] = [0, 1]", "const [lo, hi] = [4, 5];\nlo + hi"),
        ("var opts = 1", "let { depth: opts } = { depth: 6 };\nvoid 0, opts"),
    ],
    ids=["class-then-new", "typeof", "async-function", "array-pattern", "object-pattern"],
)
def test_names_may_be_declared_again_in_any_form(
    client: Client, ts: str, before: str, again: str
) -> None:
    assert client.run(before, context_id=ts)["error"] is None
    body = client.run(again, context_id=ts)
    assert body["error"] is None, body["error"]
    assert body["items"][0]["text"] in {"2", "3", "9", "6"}


def test_a_busy_callback_a_cell_left_for_its_turn_times_out_with_it(
    client: Client, ts: str
) -> None:
    client.run("let kept = 3", context_id=ts)
    body = client.run(
        "process.nextTick(() => { while (true) {} }); 'returned'", context_id=ts, timeout_ms=300
    )
    assert body["error"] is not None and body["error"]["name"] == "TimeoutError", body
    assert body["items"] == []
    assert client.run("kept", context_id=ts)["items"] == [{"is_primary": True, "text": "3"}]


def test_a_value_whose_rendering_never_ends_times_out_with_the_state_kept(
    client: Client, ts: str
) -> None:
    client.run("let kept = 4", context_id=ts)
    body = client.run(
        "({ [Symbol.for('nodejs.util.inspect.custom')]() { while (true) {} } })",
        context_id=ts,
        timeout_ms=300,
    )
    assert body["error"]["name"] == "TimeoutError", body
    assert "lost" not in body["error"]["value"]
    assert client.run("kept", context_id=ts)["items"] == [{"is_primary": True, "text": "4"}]


def test_output_of_exit_listeners_reaches_the_answer(client: Client, ts: str) -> None:
    body = client.run(
        "process.on('exit', (code) => console.log('exiting with', code));\n"
        "console.log('before'); process.exit(3)",
        context_id=ts,
    )
    assert body["error"]["name"] == "ContextDied", body
    assert "exited with code 3" in body["error"]["value"]
    assert body["logs"]["stdout"] == ["before", "exiting with 3"]


def test_a_busy_interval_of_a_finished_cell_is_stopped_by_a_timeout(
    client: Client, ts: str
) -> None:
    armed = client.run(
        "let kept = 5;\n"
        "setInterval(() => { const t = Date.now(); while (Date.now() - t < 5000) {} }, 50); 'armed'",
        context_id=ts,
    )
    assert armed["error"] is None, armed
    time.sleep(0.2)
    stopped = client.run("kept", context_id=ts, timeout_ms=500)
    assert stopped["error"]["name"] == "TimeoutError", stopped
    after = client.run("kept", context_id=ts, timeout_ms=2000)
    assert after["error"] is None, after  # the context is usable again, its state kept
    assert after["items"] == [{"is_primary": True, "text": "5"}]
    told = stopped["logs"]["stderr"] + after["logs"]["stderr"]
    assert told == [
        "[cellbox: an interrupt stopped a setInterval callback; the interval was cleared]"
    ]


@pytest.mark.slow
def test_interrupts_racing_the_end_of_a_cell_never_lose_state(client: Client, ts: str) -> None:
    """An interrupt that lands as a busy cell ends by itself, under CPU load: the cell
    answers (done or Interrupted) and the state stays. A termination that landed in the
    worker's own code while it sent the answer used to leave the execution without its
    `done`, so the server killed the process after the grace period (about 1 in 150)."""
    spin = "import time\nend = time.time() + 25\nwhile time.time() < end: pass"
    spinners = [subprocess.Popen(["nice", "-n", "5", sys.executable, "-c", spin]) for _ in range(2)]
    try:
        client.run("let keep = 1", context_id=ts)
        with ThreadPoolExecutor(1) as pool:
            for i in range(100):
                running = pool.submit(
                    client.run,
                    "const t0 = Date.now(); while (Date.now() - t0 < 100) {}",
                    context_id=ts,
                )
                time.sleep(0.03 + (i % 10) * 0.01)
                client.post(f"/contexts/{ts}/interrupt")
                body = running.result()
                if body["error"] is not None:
                    assert body["error"]["name"] == "Interrupted", body
                    assert "lost" not in body["error"]["value"], body
                kept = client.run("keep", context_id=ts)
                assert kept["items"] == [{"is_primary": True, "text": "1"}], (i, body, kept)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def test_a_cell_that_is_only_an_object_literal_shows_the_object(client: Client, ts: str) -> None:
    shown = client.run("{ a: 1, b: 'x' }", context_id=ts)
    assert shown["error"] is None, shown
    assert shown["items"] == [{"is_primary": True, "text": "{ a: 1, b: 'x' }"}]
    typed = client.run("{ n: 1 as number, list: [] as string[] }", context_id=ts)
    assert typed["items"] == [{"is_primary": True, "text": "{ n: 1, list: [] }"}], typed
    block = client.run("{ let inner = 2; console.log(inner) }", context_id=ts)
    assert block["error"] is None, block
    assert (block["items"], block["logs"]["stdout"]) == ([], ["2"])
    wrong = client.run("{ a: 1,, }", context_id=ts)
    assert wrong["error"]["name"] == "SyntaxError", wrong
