"""Defects found by an audit of the three clients, each as a user meets it (real server,
real processes, the official MCP SDK's ClientSession over stdio and streamable HTTP)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import subprocess
import time

import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from cellbox.client import (
    APIError,
    AsyncClient,
    AsyncContext,
    Client,
    ConnectionFailed,
    Context,
    ContextInfo,
    Item,
    StreamClosed,
)
from cellbox.commands.repl import read_cell
from cellbox.mcp_server import MAX_TEXT_CHARS, file_result
from cellbox.serve_process import free_port
from tests.clients.test_cli import CELLBOX, cli
from tests.clients.test_mcp import configured, mcp_over_http, text_of
from tests.conftest import UNPUBLISHED

# ---- SDK ----


def test_a_stream_is_read_once_and_its_result_stays(sdk):
    with sdk.contexts.create() as ctx:
        stream = ctx.stream("print('a')\n1 + 1")
        events = list(stream)
        assert [type(event).__name__ for event in events] == ["Stdout", "Result", "Exit"]
        # Read to its end: the result is there, and a new loop has nothing more to give.
        assert stream.result().text == "2" and list(stream) == []

        stopped = ctx.stream("for i in range(3): print(i)")
        for _ in stopped:
            break
        with pytest.raises(StreamClosed, match="earlier loop"):
            stopped.result()
        with ctx.stream("3") as closed:
            pass
        with pytest.raises(StreamClosed):
            list(closed)
        assert ctx.execute("'still fine'").text == "'still fine'"


def test_an_async_stream_is_read_once_and_its_result_stays(server):
    async def scenario() -> None:
        async with AsyncClient(server.url, server.token) as client:
            async with client.contexts.create() as ctx:
                stream = ctx.stream("6 * 7")
                assert len([event async for event in stream]) == 2
                assert (await stream.result()).text == "42"
                assert [event async for event in stream] == []
                stopped = ctx.stream("for i in range(3): print(i)")
                async for _ in stopped:
                    break
                with pytest.raises(StreamClosed):
                    await stopped.result()

    asyncio.run(scenario())


def test_upload_sources_that_are_not_bytes_are_refused_clearly(sdk, tmp_path):
    (tmp_path / "local.txt").write_text("text")
    with sdk.contexts.create() as ctx, open(tmp_path / "local.txt") as text_file:
        for source in (text_file, io.StringIO("text"), 12):
            with pytest.raises(TypeError, match="binary file object"):
                ctx.files.upload("copy.txt", source)
        assert ctx.files.list() == []


REDIRECT = b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://cellbox.example/execute\r\n"
REDIRECT += b"Content-Length: 0\r\nConnection: close\r\n\r\n"
HTML = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n"
HTML += b"Connection: close\r\n\r\n<html></html>"


def test_a_redirect_or_an_answer_that_is_not_the_api_is_an_api_error(misbehaving):
    with Client(misbehaving(REDIRECT), "token") as client:
        with pytest.raises(APIError, match="redirects to https://cellbox.example/execute") as e:
            client.execute("1")
        assert e.value.status == 308
    with Client(misbehaving(HTML), "token") as client:
        with pytest.raises(APIError, match="not one the cellbox API gives") as e:
            client.contexts.list()
        assert e.value.body == "<html></html>"


def test_a_with_block_that_failed_keeps_its_own_error_when_cleanup_fails_too():
    # The server is gone (nothing listens there): the block's error is the one to catch.
    gone = f"http://127.0.0.1:{free_port()}"
    info = ContextInfo("ctx_gone", "python")
    with Client(gone, "token") as client:
        with pytest.raises(ValueError, match="the block's own"):
            with Context(client, info):
                raise ValueError("the block's own")
        with pytest.raises(ConnectionFailed), Context(client, info):
            pass

    async def scenario() -> None:
        async with AsyncClient(gone, "token") as client:
            with pytest.raises(ValueError, match="the block's own"):
                async with AsyncContext(client, info):
                    raise ValueError("the block's own")

    asyncio.run(scenario())


# ---- command line ----


def test_files_rm_goes_on_past_a_missing_path(server, sdk):
    with sdk.contexts.create() as ctx:
        ctx.files.upload("a", b"1")
        ctx.files.upload("b", b"2")
        done = cli(server, "files", "rm", ctx.id, "a", "missing", "b")
        assert done.returncode == 2 and "file not found: missing" in done.stderr
        assert ctx.files.list() == []


def test_repl_with_cells_piped_in_prints_no_prompts_and_runs_the_last_block(server):
    # The last block has no empty line after it: the end of the input ends it.
    cells = "x = 1\nfor i in range(2):\n    print(i)\n\nx + 41\nfor i in range(2):\n    print(-i)\n"
    done = cli(server, "repl", stdin=cells)
    assert (done.returncode, done.stdout) == (0, "0\n1\n42\n0\n-1\n"), done.stderr


def test_the_commands_that_make_a_context_take_its_network_and_packages(server, sdk):
    made = json.loads(cli(server, "contexts", "create", "--json", "--network", "off").stdout)
    assert made["network"] == "off"
    sdk.contexts.delete(made["id"])
    kept = cli(server, "exec", "--keep", "--allow", "198.51.100.0/24", "--allow", "*.test", "1")
    context = sdk.contexts.get(kept.stderr.strip().removeprefix("context: "))
    assert sorted(context.info.network["allow"]) == ["*.test", "198.51.100.0/24"]
    context.delete()
    # Installed first, under the context's network policy: here none, so it fails at once.
    failed = cli(server, "exec", "--network", "off", "--package", UNPUBLISHED, "1")
    assert failed.returncode == 2 and "packages:" in failed.stderr, failed.stderr
    both = cli(server, "exec", "--network", "off", "--allow", "x.test", "1")
    assert both.returncode == 2 and "not both" in both.stderr
    existing = cli(server, "exec", "--context", context.id, "--package", "x", "1")
    assert existing.returncode == 2 and "make a new context" in existing.stderr


def test_a_json_display_object_is_shown_as_its_json(server):
    placeholder = Item(text="<IPython.core.display.JSON object>", json={"a": ["é"]})
    assert placeholder.readable == '{\n  "a": [\n    "é"\n  ]\n}'
    assert Item(text="{'a': 1}", json={"a": 1}).readable == "{'a': 1}"
    code = "from IPython.display import JSON, display\ndisplay(JSON({'n': 1}))"
    done = cli(server, "exec", code)
    assert (done.returncode, done.stdout) == (0, '{\n  "n": 1\n}\n'), done.stderr


def test_input_that_ends_inside_a_cell_ends_the_cell():
    def ask_from(lines):
        answers = iter(lines)

        def ask(prompt):
            try:
                return next(answers)
            except StopIteration:
                raise EOFError from None

        return ask

    assert read_cell("python", ask_from(["if True:", "    x = 1"])) == "if True:\n    x = 1"
    with pytest.raises(EOFError):
        read_cell("python", ask_from([]))


def test_output_the_terminal_cannot_encode_is_escaped(server):
    env = {**os.environ, "CELLBOX_URL": server.url, "CELLBOX_API_KEY": server.token}
    env["PYTHONIOENCODING"] = "ascii"
    done = subprocess.run(
        [CELLBOX, "exec", "print('π ≈ 3.14')\n'ok'"], env=env, capture_output=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, b"\\u03c0 \\u2248 3.14\n'ok'\n"), done.stderr


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started_with", [None, _ignore_sigint], ids=["default", "sigint_ignored"])
def test_ctrl_c_outside_a_running_cell_ends_quietly_with_130(server, sdk, started_with):
    # A --json cell is one plain request, so Ctrl-C stops the command itself there, also
    # when the command inherited SIGINT ignored (a shell's background job).
    env = {**os.environ, "CELLBOX_URL": server.url, "CELLBOX_API_KEY": server.token}
    before = {context.id for context in sdk.contexts.list()}
    code = "open('started', 'w').close()\nimport time\ntime.sleep(60)"
    process = subprocess.Popen(
        [CELLBOX, "exec", "--json", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=started_with,
    )
    deadline = time.monotonic() + 30
    while not any(
        context.id not in before and context.files.list() for context in sdk.contexts.list()
    ):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (130, b"", b"\n")
    # The context it made for the cell is deleted on the way out, as after any exec.
    assert {context.id for context in sdk.contexts.list()} == before


# ---- MCP ----


def test_mcp_files_base64_display_objects_file_tools_language_and_new_contexts(server, sdk):
    async def scenario() -> None:
        async with stdio_client(configured(server)) as streams, ClientSession(*streams) as mcp:
            await mcp.initialize()
            bad = await mcp.call_tool(
                "upload_file", {"path": "x.bin", "content": "%%%", "encoding": "base64"}
            )
            assert bad.is_error and "not valid base64" in text_of(bad)
            wrapped = base64.encodebytes(bytes(range(256)) * 4).decode()  # lines of 76
            ok = await mcp.call_tool(
                "upload_file", {"path": "x.bin", "content": wrapped, "encoding": "base64"}
            )
            assert not ok.is_error and "(1024 bytes)" in text_of(ok), text_of(ok)

            # The file tools reach the default context of the language the code runs in.
            arguments = {"path": "t.txt", "content": "for ts", "language": "typescript"}
            assert not (await mcp.call_tool("upload_file", arguments)).is_error
            code = "require('fs').readFileSync('t.txt', 'utf8')"
            read = await mcp.call_tool("run_code", {"code": code, "language": "typescript"})
            assert "result: 'for ts'" in text_of(read), text_of(read)

            code = "from IPython.display import SVG, JSON, display\n"
            code += "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'))\nJSON({'a': 1})"
            shown = text_of(await mcp.call_tool("run_code", {"code": code}))
            assert 'output: <svg xmlns="http://www.w3.org/2000/svg"/>' in shown, shown
            assert 'result: {\n  "a": 1\n}' in shown and "object>" not in shown, shown

            offline = {"network": "off", "packages": [UNPUBLISHED]}
            failed = await mcp.call_tool("create_context", offline)
            assert failed.is_error and "packages:" in text_of(failed), text_of(failed)
            made = await mcp.call_tool("create_context", {"network": "off"})
            assert '"network": "off"' in text_of(made), text_of(made)

    before = {context.id for context in sdk.contexts.list()}
    asyncio.run(scenario())
    for context in sdk.contexts.list():
        if context.id not in before:
            context.delete()


def test_mcp_parallel_first_calls_share_one_default_context(server, sdk):
    before = {context.id for context in sdk.contexts.list()}

    async def scenario(url: str) -> str:
        async with (
            streamable_http_client(url) as (read, write, *_),
            ClientSession(read, write) as mcp,
        ):
            await mcp.initialize()
            calls = [mcp.call_tool("run_code", {"code": f"v{i} = {i}"}) for i in range(3)]
            calls.append(mcp.call_tool("upload_file", {"path": "f.txt", "content": "x"}))
            assert not any(result.is_error for result in await asyncio.gather(*calls))
            code = "sorted(n for n in globals() if n.startswith('v')), open('f.txt').read()"
            return text_of(await mcp.call_tool("run_code", {"code": code}))

    with mcp_over_http(server) as url:
        assert "result: (['v0', 'v1', 'v2'], 'x')" in asyncio.run(scenario(url))
        made = [c for c in sdk.contexts.list() if c.id not in before]
        assert len(made) == 1, made
        made[0].delete()


def test_a_long_text_file_is_cut_like_long_output():
    text = "".join(f"line {n}\n" for n in range(20_000))
    (block,) = file_result("log.txt", text.encode()).content
    assert len(block.text) < MAX_TEXT_CHARS + 200 and "characters cut here" in block.text
    assert block.text.startswith("line 0\n") and block.text.endswith("line 19999\n")
