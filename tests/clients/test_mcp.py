"""``cellbox mcp`` through the official MCP client over stdio."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import ImageContent, TextContent

from cellbox.serve_process import free_port

CELLBOX = str(Path(sys.executable).parent / "cellbox")
TOOLS = {
    "run_code",
    "create_context",
    "list_contexts",
    "delete_context",
    "restart_context",
    "upload_file",
    "download_file",
    "list_files",
}


def mcp_server(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(
        command=CELLBOX, args=["mcp"], env={"PATH": os.environ["PATH"], **env}
    )


def configured(server) -> StdioServerParameters:
    return mcp_server({"CELLBOX_URL": server.url, "CELLBOX_API_KEY": server.token})


def text_of(result) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def test_tools_state_images_errors_and_contexts(server):
    async def scenario():
        async with Client(configured(server)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == TOOLS
            for tool in tools.values():
                assert len(tool.description or "") > 40, tool.name
                for name, field in tool.input_schema.get("properties", {}).items():
                    assert field.get("description"), (tool.name, name)
            run_code = tools["run_code"].input_schema
            assert run_code["required"] == ["code"]
            assert run_code["properties"]["language"]["enum"] == ["python", "typescript"]
            assert "persist" in tools["run_code"].description

            first = await client.call_tool("run_code", {"code": "x = 6\nprint('set')"})
            assert not first.is_error and "set" in text_of(first)
            second = await client.call_tool("run_code", {"code": "x * 7"})
            assert "result: 42" in text_of(second)

            plot = await client.call_tool(
                "run_code", {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 2]);"}
            )
            images = [block for block in plot.content if isinstance(block, ImageContent)]
            assert len(images) == 1 and images[0].mime_type == "image/png"
            assert base64.b64decode(images[0].data).startswith(b"\x89PNG")

            failed = await client.call_tool("run_code", {"code": "1 / 0"})
            assert failed.is_error and "ZeroDivisionError: division by zero" in text_of(failed)
            assert "Traceback" in text_of(failed)

            created = await client.call_tool("create_context", {"language": "typescript"})
            ts_id = text_of(created).split('"id": "')[1].split('"')[0]
            await client.call_tool("run_code", {"code": "let n = 2", "context_id": ts_id})
            ts = await client.call_tool("run_code", {"code": "n * 21", "context_id": ts_id})
            assert "result: 42" in text_of(ts)
            assert ts_id in text_of(await client.call_tool("list_contexts", {}))
            restarted = await client.call_tool("restart_context", {"context_id": ts_id})
            assert not restarted.is_error
            gone = await client.call_tool("run_code", {"code": "n", "context_id": ts_id})
            assert gone.is_error and "ReferenceError" in text_of(gone)
            await client.call_tool("delete_context", {"context_id": ts_id})
            missing = await client.call_tool("delete_context", {"context_id": ts_id})
            assert missing.is_error and "not found" in text_of(missing)

    asyncio.run(scenario())


@pytest.mark.slow
def test_starts_its_own_server_when_none_is_configured(tmp_path):
    # A temporary directory of its own: other suites on the machine start servers too.
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        "CELLBOX_STATE_DIR": str(tmp_path / "unused"),
        "CELLBOX_POOL_TYPESCRIPT": "0",
        "TMPDIR": str(temp),
    }
    before = set(temp.glob("cellbox-mcp-*"))

    async def scenario():
        async with Client(mcp_server(env)) as client:
            result = await client.call_tool("run_code", {"code": "import os\nos.getpid() > 0"})
            assert not result.is_error and "result: True" in text_of(result)
            assert "ctx_" in text_of(await client.call_tool("list_contexts", {}))
            (state_dir,) = set(temp.glob("cellbox-mcp-*")) - before
            return state_dir

    state_dir = asyncio.run(scenario())
    # The server it started stopped with it and its state directory is gone.
    deadline = time.monotonic() + 30
    while state_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not state_dir.exists()


@contextmanager
def mcp_over_http(server) -> Iterator[str]:
    """``cellbox mcp --transport http`` for ``server``, listening: its endpoint's URL."""
    port = free_port()
    env = {**os.environ, "CELLBOX_URL": server.url, "CELLBOX_API_KEY": server.token}
    process = subprocess.Popen(
        [CELLBOX, "mcp", "--transport", "http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        assert process.wait(30) == 0, process.stderr.read() if process.stderr else ""


def test_streamable_http_transport(server):
    async def scenario(url: str) -> str:
        async with Client(url) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
            return text_of(await client.call_tool("run_code", {"code": "21 * 2"}))

    with mcp_over_http(server) as url:
        assert "result: 42" in asyncio.run(scenario(url))


def test_a_default_context_that_is_gone_is_replaced_and_said_so(server):
    from cellbox.client import Client as SDK

    async def scenario():
        async with Client(configured(server)) as client:
            first = text_of(await client.call_tool("run_code", {"code": "kept = 1"}))
            gone = first.split("[context ")[1].split(",")[0]
            with SDK(server.url, server.token) as sdk:
                sdk.contexts.delete(gone)
            listed = await client.call_tool("list_files", {})
            assert not listed.is_error, text_of(listed)
            assert f"default python context {gone} was gone (it was deleted)" in text_of(listed)
            again = await client.call_tool("run_code", {"code": "'kept' in globals()"})
            assert "result: False" in text_of(again) and "was gone" not in text_of(again)
            # A display object's HTML or Markdown, not its "<… object>" repr.
            code = "from IPython.display import HTML, Markdown, display\n"
            code += "display(Markdown('**md**'))\nHTML('<b>x</b>')"
            shown = text_of(await client.call_tool("run_code", {"code": code}))
            assert "output: **md**" in shown and "result: <b>x</b>" in shown, shown

    asyncio.run(scenario())
