"""Files of a context through the SDK (both faces), the CLI and the MCP server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from mcp import Client as MCPClient
from mcp_types import ImageContent

from cellbox.client import AsyncClient, FileNotFound, InvalidRequest
from tests.clients.test_cli import cli
from tests.clients.test_mcp import configured, text_of

BLOB = os.urandom(300_000) + b"\x00end"


def test_upload_download_list_delete(sdk, tmp_path):
    local = tmp_path / "blob.bin"
    local.write_bytes(BLOB)
    with sdk.contexts.create() as ctx:
        assert ctx.files.upload("data/blob.bin", local).size == len(BLOB)
        assert ctx.files.upload("data/note.txt", b"hello").path == "data/note.txt"
        assert ctx.files.upload("stream.bin", io.BytesIO(BLOB)).size == len(BLOB)
        # What is uploaded is visible to the code at once, and the reverse.
        seen = ctx.execute("open('data/note.txt').read()")
        assert seen.text == "'hello'"
        ctx.execute("open('made.txt', 'w').write('by code')")
        assert ctx.files.download("made.txt") == b"by code"
        assert ctx.files.download("data/blob.bin") == BLOB
        target = tmp_path / "copy.bin"
        assert ctx.files.download("stream.bin", target) == len(BLOB)
        assert target.read_bytes() == BLOB
        sink = io.BytesIO()
        ctx.files.download("data/note.txt", sink)
        assert sink.getvalue() == b"hello"

        top = {entry.path: entry for entry in ctx.files.list()}
        assert top["data"].type == "dir" and top["made.txt"].size == 7
        nested = {entry.path for entry in ctx.files.list("data")}
        assert nested == {"data/blob.bin", "data/note.txt"}
        assert "data/note.txt" in {entry.path for entry in ctx.files.list(recursive=True)}

        ctx.files.delete("data/note.txt")
        with pytest.raises(FileNotFound):
            ctx.files.download("data/note.txt")
        with pytest.raises(InvalidRequest) as caught:
            ctx.files.download("../outside")
        assert [e.field for e in caught.value.errors] == ["path"]
        missing = tmp_path / "never.bin"
        with pytest.raises(FileNotFound):
            ctx.files.download("nope.bin", missing)
        assert not missing.exists()  # no partial file left behind


def test_files_survive_restart_and_archives_round_trip(sdk):
    with sdk.contexts.create() as ctx:
        ctx.files.upload("keep/a.txt", b"A")
        ctx.restart()
        assert ctx.files.download("keep/a.txt") == b"A"
        packed = ctx.archive(path="keep")
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            assert any(name.endswith("a.txt") for name in tar.getnames())
        with sdk.contexts.create() as other:
            unpacked = other.unpack(packed, path="restored")
            assert unpacked.files >= 1
            names = {entry.path for entry in other.files.list("restored", recursive=True)}
            assert any(name.endswith("a.txt") for name in names)


def test_async_files(server, tmp_path):
    local = tmp_path / "in.bin"
    local.write_bytes(BLOB)

    async def scenario():
        async with AsyncClient(server.url, server.token) as client:
            async with client.contexts.create() as ctx:
                assert (await ctx.files.upload("in.bin", local)).size == len(BLOB)
                assert await ctx.files.download("in.bin") == BLOB
                out = tmp_path / "out.bin"
                assert await ctx.files.download("in.bin", out) == len(BLOB)
                assert out.read_bytes() == BLOB
                assert [e.path for e in await ctx.files.list()] == ["in.bin"]
                archive = tmp_path / "all.tar.gz"
                assert await ctx.archive(archive) > 0
                await ctx.files.delete("in.bin")
                assert await ctx.files.list() == []
                assert (await ctx.unpack(archive)).files == 1
                assert await ctx.files.download("in.bin") == BLOB
                with pytest.raises(FileNotFound):
                    await ctx.files.delete("gone.bin")

    asyncio.run(scenario())


def test_cli_files_commands(server, sdk, tmp_path):
    local = tmp_path / "table.csv"
    local.write_text("a,b\n1,2\n")
    with sdk.contexts.create() as ctx:
        put = cli(server, "files", "put", ctx.id, str(local), "in/table.csv", "--json")
        assert json.loads(put.stdout) == {"path": "in/table.csv", "size": 8}
        assert cli(server, "files", "put", ctx.id, "-", "piped.txt", stdin="piped").returncode == 0
        listing = cli(server, "files", "ls", ctx.id, "-r")
        assert "in/table.csv" in listing.stdout and "piped.txt" in listing.stdout
        entries = json.loads(cli(server, "files", "ls", ctx.id, "in", "--json").stdout)
        assert [(e["path"], e["type"], e["size"]) for e in entries] == [("in/table.csv", "file", 8)]
        target = tmp_path / "back.csv"
        assert cli(server, "files", "get", ctx.id, "in/table.csv", str(target)).returncode == 0
        assert target.read_text() == "a,b\n1,2\n"
        assert cli(server, "files", "get", ctx.id, "piped.txt", "-").stdout == "piped"
        assert cli(server, "files", "rm", ctx.id, "in").returncode == 0
        missing = cli(server, "files", "get", ctx.id, "in/table.csv", str(target))
        assert missing.returncode == 2 and "file not found" in missing.stderr


def test_mcp_file_round_trip(server):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(64)).decode()

    async def scenario():
        async with MCPClient(configured(server)) as client:
            wrote = await client.call_tool(
                "upload_file", {"path": "in/data.txt", "content": "x,y\n1,2"}
            )
            assert not wrote.is_error, text_of(wrote)
            used = await client.call_tool(
                "run_code", {"code": "open('in/data.txt').read().splitlines()[1]"}
            )
            assert "'1,2'" in text_of(used)
            await client.call_tool("run_code", {"code": "open('out.txt', 'w').write('made')"})
            listed = text_of(await client.call_tool("list_files", {"recursive": True}))
            assert "in/data.txt" in listed and "out.txt" in listed
            assert text_of(await client.call_tool("download_file", {"path": "out.txt"})) == "made"
            await client.call_tool(
                "upload_file", {"path": "pic.png", "content": png, "encoding": "base64"}
            )
            picture = await client.call_tool("download_file", {"path": "pic.png"})
            images = [b for b in picture.content if isinstance(b, ImageContent)]
            assert images and images[0].data == png
            missing = await client.call_tool("download_file", {"path": "nope.txt"})
            assert missing.is_error and "not found" in text_of(missing)

    asyncio.run(scenario())


def test_paths_are_relative_to_the_work_directory(sdk):
    with sdk.contexts.create() as ctx:
        ctx.files.upload("x.txt", b"x")
        absolute = str(Path(ctx.cwd) / "x.txt")
        assert ctx.files.download(absolute) == b"x"
