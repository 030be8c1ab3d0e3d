"""The file endpoints over real HTTP: what the code sees, Range, listing, archives, lifecycle."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import Client
from tests.files.conftest import field_errors, py, stdout, workdir


def test_upload_is_seen_by_the_code_and_code_output_is_downloadable(
    client: Client, ctx: str
) -> None:
    put = client.put(f"/contexts/{ctx}/files/data/in.csv", content=b"a,b\n1,2\n3,4\n")
    assert put.status_code == 200, put.text
    assert put.json() == {"path": "data/in.csv", "size": 12}
    code = (
        "import os, pandas as pd\n"
        "df = pd.read_csv('data/in.csv')\n"
        "os.makedirs('out', exist_ok=True)\n"
        "df.assign(c=df.a + df.b).to_csv('out/sum.csv', index=False)\n"
        "int(df.b.sum())"
    )
    assert py(client, ctx, code) == 6
    got = client.get(f"/contexts/{ctx}/files/out/sum.csv")
    assert got.status_code == 200
    assert got.content == b"a,b,c\n1,2,3\n3,4,7\n"
    assert got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-length"] == str(len(got.content))


def test_replace_binary_content_types_and_absolute_paths(client: Client, ctx: str) -> None:
    blob = bytes(range(256)) * 40
    assert client.put(f"/contexts/{ctx}/files/img.png", content=b"old").status_code == 200
    assert client.put(f"/contexts/{ctx}/files/img.png", content=blob).json()["size"] == len(blob)
    got = client.get(f"/contexts/{ctx}/files/img.png")
    assert got.content == blob and got.headers["content-type"] == "image/png"
    assert client.get(f"/contexts/{ctx}/files/no-ext").status_code == 404
    client.put(f"/contexts/{ctx}/files/no-ext", content=b"x")
    assert client.get(f"/contexts/{ctx}/files/no-ext").headers["content-type"] == (
        "application/octet-stream"
    )
    absolute = workdir(client, ctx) + "/img.png"
    assert client.get(f"/contexts/{ctx}/files/{absolute}").content == blob
    assert client.put(f"/contexts/{ctx}/files/empty", content=b"").json()["size"] == 0
    assert client.get(f"/contexts/{ctx}/files/empty").content == b""


def test_range_requests(client: Client, ctx: str) -> None:
    client.put(f"/contexts/{ctx}/files/digits.txt", content=b"0123456789")
    url = f"/contexts/{ctx}/files/digits.txt"
    part = client.get(url, headers={"Range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"234"
    assert part.headers["content-range"] == "bytes 2-4/10"
    assert part.headers["content-length"] == "3"
    assert client.get(url, headers={"Range": "bytes=-3"}).content == b"789"
    assert client.get(url, headers={"Range": "bytes=7-"}).content == b"789"
    whole = client.get(url, headers={"Range": "bytes=0-1,4-5"})
    assert whole.status_code == 200 and whole.content == b"0123456789"
    past = client.get(url, headers={"Range": "bytes=10-"})
    assert past.status_code == 416 and past.headers["content-range"] == "bytes */10"


def test_listing_and_delete(client: Client, ctx: str) -> None:
    for name in ("a.txt", "sub/b.txt", "sub/deep/c.txt"):
        client.put(f"/contexts/{ctx}/files/{name}", content=b"12345")
    py(client, ctx, "import os; os.symlink('a.txt', 'link')")
    top = client.get(f"/contexts/{ctx}/files").json()["items"]
    assert [(i["path"], i["type"]) for i in top if not i["path"].startswith(".")] == [
        ("a.txt", "file"),
        ("link", "symlink"),
        ("sub", "dir"),
    ]
    assert top[0]["size"] == 5 and top[0]["modified"].endswith("Z")
    deep = client.get(f"/contexts/{ctx}/files", params={"path": "sub", "recursive": "true"})
    assert [i["path"] for i in deep.json()["items"]] == [
        "sub/b.txt",
        "sub/deep",
        "sub/deep/c.txt",
    ]
    assert client.get(f"/contexts/{ctx}/files/link").content == b"12345"  # inside: followed
    assert client.delete(f"/contexts/{ctx}/files/link").status_code == 204
    assert client.get(f"/contexts/{ctx}/files/a.txt").status_code == 200  # link gone, not file
    assert client.delete(f"/contexts/{ctx}/files/sub").status_code == 204
    assert py(client, ctx, "import os; os.path.exists('sub')") is False
    missing = client.delete(f"/contexts/{ctx}/files/sub")
    assert missing.status_code == 404 and missing.json() == {"message": "file not found: sub"}
    listed = client.get(f"/contexts/{ctx}/files", params={"path": "nope"})
    assert listed.status_code == 404


def test_wrong_kinds_are_400_on_path(client: Client, ctx: str) -> None:
    client.put(f"/contexts/{ctx}/files/dir/f.txt", content=b"x")
    assert field_errors(client.get(f"/contexts/{ctx}/files/dir")) == ["path"]
    assert field_errors(client.put(f"/contexts/{ctx}/files/dir", content=b"x")) == ["path"]
    assert field_errors(client.get(f"/contexts/{ctx}/files", params={"path": "dir/f.txt"})) == [
        "path"
    ]
    assert field_errors(client.put(f"/contexts/{ctx}/files/dir/f.txt/under", content=b"")) == [
        "path"
    ]
    assert field_errors(client.get(f"/contexts/{ctx}/files", params={"recursive": "maybe"})) == [
        "recursive"
    ]
    assert client.get("/contexts/ctx_nope/files/a").json() == {
        "message": "context ctx_nope not found"
    }


def _tar(members: dict[str, bytes], gz: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_archives_round_trip(client: Client, ctx: str) -> None:
    body = _tar({"a.txt": b"aaa", "x/b.txt": b"bb"})
    put = client.put(f"/contexts/{ctx}/archive", params={"path": "in"}, content=body)
    assert put.status_code == 200, put.text
    assert put.json() == {"path": "in", "files": 2, "size": 5}
    assert stdout(client, ctx, "print(open('in/x/b.txt').read())") == "bb"
    plain = _tar({"c.txt": b"c"}, gz=False)
    assert (
        client.put(f"/contexts/{ctx}/archive", params={"path": "in/x"}, content=plain).json()[
            "files"
        ]
        == 1
    )
    got = client.get(f"/contexts/{ctx}/archive", params={"path": "in"})
    assert got.status_code == 200 and got.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(got.content), mode="r:gz") as tar:
        names = {m.name: m for m in tar.getmembers()}
        assert set(names) == {"a.txt", "x", "x/b.txt", "x/c.txt"}
        assert tar.extractfile(names["x/b.txt"]).read() == b"bb"  # type: ignore[union-attr]
    whole = client.get(f"/contexts/{ctx}/archive")
    with tarfile.open(fileobj=io.BytesIO(whole.content), mode="r:gz") as tar:
        assert "in/x/c.txt" in tar.getnames()
    assert field_errors(client.put(f"/contexts/{ctx}/archive", content=b"not a tar")) == ["archive"]


def test_typescript_context(client: Client) -> None:
    ctx = client.context("typescript")
    try:
        client.put(f"/contexts/{ctx}/files/in.json", content=b'{"n": 41}')
        code = (
            "const fs = require('fs');\n"
            "const n: number = JSON.parse(fs.readFileSync('in.json', 'utf8')).n;\n"
            "fs.writeFileSync('out.txt', String(n + 1));\n"
            "console.log('ok')"
        )
        assert stdout(client, ctx, code, "typescript") == "ok"
        assert client.get(f"/contexts/{ctx}/files/out.txt").content == b"42"
    finally:
        client.delete(f"/contexts/{ctx}")


def test_custom_cwd_keeps_the_work_directory_as_root(client: Client) -> None:
    ctx = client.context("python", cwd="/tmp")
    try:
        client.put(f"/contexts/{ctx}/files/note.txt", content=b"hi")
        home = stdout(client, ctx, "import os; print(os.environ['HOME'])")
        assert home.startswith(workdir_root(client)) and home != "/tmp"
        assert py(client, ctx, "import os; (os.getcwd(), os.path.exists('note.txt'))") == (
            "/tmp",
            False,
        )
        assert py(client, ctx, f"open({home!r} + '/note.txt').read()") == "hi"
    finally:
        client.delete(f"/contexts/{ctx}")


def workdir_root(client: Client) -> str:
    """The directory holding every work directory (the parent of a fresh context's cwd)."""
    ctx = client.context("python")
    try:
        return workdir(client, ctx).rsplit("/", 1)[0]
    finally:
        client.delete(f"/contexts/{ctx}")


def test_files_survive_restart_and_go_with_the_context(client: Client) -> None:
    ctx = client.context("python")
    client.put(f"/contexts/{ctx}/files/keep.txt", content=b"kept")
    py(client, ctx, "x = 1")
    assert client.post(f"/contexts/{ctx}/restart").status_code == 200
    assert py(client, ctx, "open('keep.txt').read()") == "kept"
    path = workdir(client, ctx)
    assert os.path.isfile(path + "/keep.txt")
    assert client.delete(f"/contexts/{ctx}").status_code == 204
    assert not os.path.exists(path)
    assert client.get(f"/contexts/{ctx}/files/keep.txt").status_code == 404


def test_a_running_execution_does_not_block_file_calls(client: Client, ctx: str) -> None:
    client.put(f"/contexts/{ctx}/files/data.bin", content=b"z" * 100_000)
    started = threading.Event()
    result: dict[str, object] = {}

    def long_run() -> None:
        with client.stream_events(
            "import time\nprint('go', flush=True)\ntime.sleep(60)", context_id=ctx
        ) as events:
            for event in events:
                if event.get("type") == "stdout":
                    started.set()
                result.setdefault("events", []).append(event)  # type: ignore[union-attr]

    runner = threading.Thread(target=long_run)
    runner.start()
    try:
        assert started.wait(30)
        assert client.get(f"/contexts/{ctx}/files/data.bin").content == b"z" * 100_000
        assert client.put(f"/contexts/{ctx}/files/during.txt", content=b"d").status_code == 200
        assert client.get(f"/contexts/{ctx}/files").status_code == 200
        assert client.get(f"/contexts/{ctx}/archive").status_code == 200
        assert runner.is_alive()  # the execution is still running: nothing waited for it
    finally:
        client.post(f"/contexts/{ctx}/interrupt")
        runner.join(30)


def test_many_contexts_in_parallel(client: Client) -> None:
    contexts = [client.context("python") for _ in range(6)]
    try:

        def round_trip(i: int) -> bool:
            ctx = contexts[i % len(contexts)]
            data = f"{i}".encode() * 50_000
            put = client.put(f"/contexts/{ctx}/files/f{i}.bin", content=data)
            assert put.status_code == 200, (ctx, put.text)
            return client.get(f"/contexts/{ctx}/files/f{i}.bin").content == data

        with ThreadPoolExecutor(12) as pool:
            assert all(pool.map(round_trip, range(24)))
    finally:
        for ctx in contexts:
            client.delete(f"/contexts/{ctx}")


def test_openapi_documents_every_file_route(client: Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    files = paths["/contexts/{context_id}/files/{path}"]
    assert set(files) == {"put", "get", "delete"}
    assert set(paths["/contexts/{context_id}/files"]) == {"get"}
    assert set(paths["/contexts/{context_id}/archive"]) == {"get", "put"}
    assert "507" in files["put"]["responses"] and "413" in files["put"]["responses"]
    assert files["get"]["security"] == [{"BearerAuth": []}]
