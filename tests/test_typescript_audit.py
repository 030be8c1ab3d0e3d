"""TypeScript contexts as a demanding user meets them: what an interrupted cell leaves
behind, error stacks shown as values, rejections a cell leaves unhandled, standard input."""

from __future__ import annotations

import time
from collections.abc import Iterator

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
