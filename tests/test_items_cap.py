"""Rich items (display(), values, figures) are capped per execution, each kept whole or dropped.

The server here keeps 1 MiB of items per execution. An item is counted as the JSON the
worker sends for it; one that does not fit in what is left is dropped whole, and one line
on stderr says how many items and bytes were dropped.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Client, Server

CAP = 1 << 20
HTML = 400_000  # characters of each HTML item: two fit in the cap, a third does not

PYTHON = f"""
from IPython.display import HTML, display
import matplotlib.pyplot as plt
for n in range(4):
    display(HTML(str(n) * {HTML}))
plt.plot([1, 2, 3])
'done'
"""

TYPESCRIPT = f"""
for (let n = 0; n < 4; n++) display({{'text/html': String(n).repeat({HTML})}});
'done'
"""

NOTE = re.compile(
    r"rich output limit of (\d+) bytes reached: (\d+) items? (?:was|were) dropped \((\d+) bytes\)"
)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """This module's server (conftest's ``client`` and ``ctx`` use it): a small item cap."""
    capped = Server(items_cap_bytes=CAP, pool_python=1, pool_typescript=1).start()
    yield capped
    capped.stop()
    capped.cleanup()


def dropped(stderr: list[str]) -> tuple[int, int]:
    """Items and bytes the note on the last line of stderr says were dropped."""
    match = NOTE.search(stderr[-1])
    assert match is not None, stderr[-1:]
    assert int(match.group(1)) == CAP
    return int(match.group(2)), int(match.group(3))


def check_items(items: list[dict], figure: bool) -> None:
    """Two whole HTML items, then the value and (Python) the figure, which is captured at the
    end of the cell: later, smaller items still fit after the ones that did not."""
    assert [item.get("html") for item in items[:2]] == ["0" * HTML, "1" * HTML]
    assert items[2] == {"is_primary": True, "text": "'done'"}
    if figure:
        (plot,) = items[3:]
        assert base64.b64decode(plot["png"], validate=True).startswith(b"\x89PNG")
        assert "<svg" in plot["svg"]
    else:
        assert items[3:] == []


@pytest.mark.parametrize(("language", "code"), [("python", PYTHON), ("typescript", TYPESCRIPT)])
def test_items_past_the_cap_are_dropped_whole_and_told(client: Client, language, code):
    body = client.run(code, language=language)
    assert body["error"] is None, body["error"]
    check_items(body["items"], figure=language == "python")
    count, size = dropped(body["logs"]["stderr"])
    assert count == 2 and 2 * HTML < size < 2 * HTML + 1000
    # The next execution has the whole cap again.
    again = client.run(code, language=language, context_id=body["context_id"])
    check_items(again["items"], figure=language == "python")
    client.delete(f"/contexts/{body['context_id']}")


def test_the_stream_drops_the_same_items(client: Client):
    events = client.events(PYTHON)
    check_items([e["data"] for e in events if e["type"] == "result"], figure=True)
    stderr = [e["data"] for e in events if e["type"] == "stderr"]
    assert dropped(stderr)[0] == 2
    assert events[-2]["type"] == "stderr" and events[-1]["type"] == "exit"
    client.delete(f"/contexts/{events[-1]['context_id']}")


def peak_rss_reset(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS


def peak_rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) >> 10
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "from IPython.display import HTML, display\ndisplay(HTML('x' * 200_000_000))"),
        ("typescript", "display({'text/html': 'x'.repeat(200_000_000)});"),
    ],
)
def test_one_huge_item_is_dropped_without_the_server_holding_it(
    server: Server, client: Client, language: str, code: str
):
    context = client.context(language)
    client.run("kept = 1", context_id=context)
    assert server.pid is not None
    peak_rss_reset(server.pid)
    before = peak_rss_mib(server.pid)
    body = client.run(code + "\n'after'", context_id=context, timeout_ms=60000)
    grown = peak_rss_mib(server.pid) - before
    assert body["error"] is None, body["error"]
    assert body["items"] == [{"is_primary": True, "text": "'after'"}]
    count, size = dropped(body["logs"]["stderr"])
    assert count == 1 and size > 200_000_000
    # The 200 MB item was never buffered by the server: it read past it.
    assert grown < 50, f"the server's peak RSS grew by {grown} MiB"
    assert client.run("kept", context_id=context)["items"][0]["text"] == "1"
    client.delete(f"/contexts/{context}")


def test_the_cap_is_a_setting(client: Client):
    assert client.get("/info").json()["limits"]["items_cap_bytes"] == CAP


def test_an_error_too_long_to_keep_is_still_an_error(client: Client, ctx: str):
    # 40 MB of frame (value and traceback): past the 16 MiB this server reads of one frame.
    body = client.run("raise ValueError('e' * 20_000_000)", context_id=ctx)
    assert body["error"]["name"] == "ErrorTooLarge", body["error"]["name"]
    assert "too large" in body["error"]["value"]
    assert client.run("1 + 1", context_id=ctx)["items"][0]["text"] == "2"
