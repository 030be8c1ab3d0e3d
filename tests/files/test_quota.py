"""The per-context disk quota (kernel-enforced) and the upload limit, on a small server."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import pytest

from tests.conftest import Client, Server
from tests.files.conftest import py, stdout

MiB = 1 << 20


@pytest.fixture(scope="module")
def small() -> Iterator[Server]:
    server = Server(disk_limit_mb=48, upload_limit_mb=40, pool_typescript=1).start()
    yield server
    server.stop()
    server.cleanup()


@pytest.fixture
def api(small: Server) -> Iterator[Client]:
    with small.client() as client:
        yield client


def _names(client: Client, ctx: str) -> list[str]:
    items = client.get(f"/contexts/{ctx}/files", params={"recursive": "true"}).json()["items"]
    return [item["path"] for item in items]


def _hidden(client: Client, ctx: str) -> list[str]:
    """What the code sees, temporary names included (the listing hides those)."""
    return py(client, ctx, "import os; sorted(os.listdir('.'))")


def test_info_says_how_the_quota_is_enforced(api: Client) -> None:
    disk = api.get("/info").json()["isolation"]["disk"]
    assert disk["disk_limit_bytes"] == 48 * MiB
    assert disk["enforced"] is True, disk
    assert "btrfs qgroup" in disk["how"]


def test_code_past_the_quota_gets_an_ordinary_error(api: Client) -> None:
    ctx, ts, other = api.context("python"), api.context("typescript"), api.context("python")
    try:
        code = (
            "import errno\ntry:\n"
            "    with open('fill', 'wb') as f:\n"
            "        for _ in range(80): f.write(b'x' * (1 << 20))\n"
            "except OSError as e:\n    print(errno.errorcode[e.errno])"
        )
        assert stdout(api, ctx, code) == "EDQUOT"
        ts_code = (
            "const fs = require('fs');\n"
            "try { for (let i = 0; i < 80; i++) fs.appendFileSync('fill', Buffer.alloc(1 << 20)); "
            "console.log('no error') } catch (e) { console.log('failed') }"
        )
        assert stdout(api, ts, ts_code, "typescript") == "failed"
        # the others are unaffected: their own quota, and the server answers
        assert py(api, other, "open('f', 'wb').write(b'y' * (20 << 20))") == 20 << 20
        assert api.get("/healthz").status_code == 200
    finally:
        for context_id in (ctx, ts, other):
            api.delete(f"/contexts/{context_id}")


def test_upload_limit_is_413(api: Client) -> None:
    ctx = api.context("python")
    try:
        declared = api.put(f"/contexts/{ctx}/files/big", content=b"\0" * (41 * MiB))
        assert declared.status_code == 413 and "limit" in declared.json()["message"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: the route counts
            for _ in range(41):
                yield b"\0" * MiB

        streamed = api.put(f"/contexts/{ctx}/files/big", content=chunked())
        assert streamed.status_code == 413, streamed.text
        assert _hidden(api, ctx) == []
    finally:
        api.delete(f"/contexts/{ctx}")


def test_upload_past_the_quota_is_507_and_leaves_nothing(api: Client) -> None:
    ctx = api.context("python")
    try:
        assert api.put(f"/contexts/{ctx}/files/one", content=b"1" * (30 * MiB)).status_code == 200
        second = api.put(f"/contexts/{ctx}/files/two", content=b"2" * (30 * MiB))
        assert second.status_code == 507, second.text
        assert "quota" in second.json()["message"]
        assert _hidden(api, ctx) == ["one"]
        assert api.delete(f"/contexts/{ctx}/files/one").status_code == 204
        again = api.put(f"/contexts/{ctx}/files/two", content=b"2" * (30 * MiB))
        assert again.status_code == 200, again.text
    finally:
        api.delete(f"/contexts/{ctx}")


def test_gzip_bomb_is_507_and_writes_nothing(api: Client) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("first.txt", "zeros.bin"):
            info = tarfile.TarInfo(name)
            info.size = 5 if name == "first.txt" else 100 * MiB
            tar.addfile(info, io.BytesIO(b"\0" * info.size))
    bomb = buffer.getvalue()
    assert len(bomb) < MiB
    ctx = api.context("python")
    try:
        put = api.put(f"/contexts/{ctx}/archive", params={"path": "x"}, content=bomb)
        assert put.status_code == 507, put.text
        assert _hidden(api, ctx) == [] and _names(api, ctx) == []
        assert api.put(f"/contexts/{ctx}/files/after", content=b"a" * MiB).status_code == 200
    finally:
        api.delete(f"/contexts/{ctx}")
