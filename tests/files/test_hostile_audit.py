"""Hostile cases of the file API found by an adversarial audit: deep trees, read-only
directories, header-injecting names, archive headers that would eat the server's memory,
links that escape through other links, and slow clients that would hold every file thread.

Each one: a clear answer (never a 500 or a cut connection), the server up, and the other
contexts' files reachable.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path
from urllib.parse import unquote

import pytest

from cellbox.sandbox import archive, tree
from cellbox.sandbox.files import FileError
from tests.conftest import Client, Server
from tests.files.conftest import field_errors, py, workdir

DEEP = (
    "import os\ndef deep(top, levels):\n    os.mkdir(top); fd = os.open(top, os.O_RDONLY)\n"
    "    for _ in range(levels):\n"
    "        os.mkdir('d', dir_fd=fd); sub = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
    "        os.close(fd); fd = sub\n"
    "    open('leaf', 'w', opener=lambda n, f: os.open(n, f, 0o644, dir_fd=fd)).write('x')\n"
    "    os.close(fd)\n"
)


def test_a_deep_tree_gets_clear_answers_and_goes_with_its_context(client: Client) -> None:
    ctx = client.context("python")
    root = workdir(client, ctx)
    py(client, ctx, DEEP + f"deep('ok', 40); deep('deep', {tree.MAX_DEPTH + 5})")
    names = client.get(f"/contexts/{ctx}/files", params={"path": "ok", "recursive": "true"})
    assert names.status_code == 200 and names.json()["items"][-1]["path"].endswith("/d/leaf")
    with tarfile.open(
        fileobj=io.BytesIO(client.get(f"/contexts/{ctx}/archive?path=ok").content)
    ) as t:
        assert any(n.endswith("d/leaf") for n in t.getnames())
    too_deep = client.get(f"/contexts/{ctx}/files", params={"recursive": "true"})
    assert field_errors(too_deep) == ["path"] and "levels deep" in too_deep.text
    refused = client.delete(f"/contexts/{ctx}/files/deep")
    assert field_errors(refused) == ["path"] and "levels deep" in refused.text
    assert client.delete(f"/contexts/{ctx}/files/ok").status_code == 204
    # deeper than any recursive walk goes: the context's deletion still removes it all
    py(client, ctx, DEEP + "deep('deeper', 1500)")
    assert client.delete(f"/contexts/{ctx}").status_code == 204
    assert not os.path.exists(root)
    assert client.get("/healthz").status_code == 200


def test_a_path_of_many_levels_is_400_not_500(client: Client, ctx: str) -> None:
    deep = "a/" * 1500 + "f.txt"  # under PATH_MAX: each missing level was made recursively
    for put in (
        client.put(f"/contexts/{ctx}/files/{deep}", content=b"x"),
        client.put(f"/contexts/{ctx}/archive", params={"path": deep}, content=_tar([])),
        client.get(f"/contexts/{ctx}/files", params={"path": deep}),
    ):
        assert field_errors(put) == ["path"] and "levels deep" in put.text, put.text
    assert client.get(f"/contexts/{ctx}/files").json()["items"] == []
    fine = "b/" * 200 + "f.txt"
    assert client.put(f"/contexts/{ctx}/files/{fine}", content=b"y").status_code == 200
    assert client.get(f"/contexts/{ctx}/files/{fine}").content == b"y"


def test_only_the_apis_own_temporary_names_are_hidden(client: Client, ctx: str) -> None:
    py(client, ctx, "open('.cellbox-notes.txt', 'w').write('mine')")
    listed = client.get(f"/contexts/{ctx}/files").json()["items"]
    assert [item["path"] for item in listed] == [".cellbox-notes.txt"]
    got = client.get(f"/contexts/{ctx}/archive")
    with tarfile.open(fileobj=io.BytesIO(got.content)) as t:
        assert t.getnames() == [".cellbox-notes.txt"]


@pytest.mark.slow
def test_a_listing_of_too_many_entries_is_400(client: Client, ctx: str) -> None:
    many = tree.MAX_ITEMS + 1
    py(client, ctx, f"import os\nos.mkdir('many')\nfor i in range({many}): os.mknod(f'many/{{i}}')")
    refused = client.get(f"/contexts/{ctx}/files", params={"recursive": "true"})
    assert field_errors(refused) == ["path"] and "more than" in refused.text
    assert client.delete(f"/contexts/{ctx}/files/many").status_code == 204
    assert client.get(f"/contexts/{ctx}/files").json()["items"] == []


def test_a_read_only_directory_is_403_not_500(client: Client, ctx: str) -> None:
    py(client, ctx, "import os; os.mkdir('ro'); os.chmod('ro', 0o555)")
    put = client.put(f"/contexts/{ctx}/files/ro/new.txt", content=b"x")
    assert put.status_code == 403, put.text
    assert (
        client.put(f"/contexts/{ctx}/archive?path=ro", content=_tar([_file("a")])).status_code
        == 403
    )
    assert py(client, ctx, "import os; os.listdir('ro')") == []


def test_archive_names_that_no_header_can_carry(client: Client, ctx: str) -> None:
    names = ['quote"d', "new\nline", "数据", "back\\slash"]
    py(
        client,
        ctx,
        f"import os\nfor n in {names!r}: os.mkdir(n); open(n + '/f.txt', 'w').write('f')",
    )
    for name in names:
        got = client.get(f"/contexts/{ctx}/archive", params={"path": name})
        assert got.status_code == 200, (name, got.text)
        disposition = got.headers["content-disposition"]
        assert disposition.isascii() and "\n" not in disposition
        exact = disposition.split("filename*=UTF-8''", 1)[1]
        assert unquote(exact) == f"{name}.tar.gz"
        with tarfile.open(fileobj=io.BytesIO(got.content)) as t:
            assert t.getnames() == ["f.txt"]


def _file(name: str, data: bytes = b"data") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def _tar(members: list, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _header(kind: bytes, size: int) -> bytes:
    """A raw tar header block of type ``kind`` declaring ``size`` bytes of data."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = kind, size
    return info.tobuf(tarfile.USTAR_FORMAT)


def _gzip(*pieces: bytes, zeros: int = 0) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(piece) for piece in pieces]
    block = b"\0" * (1 << 20)
    for _ in range(zeros >> 20):
        out.append(packer.compress(block))
    return b"".join(out) + packer.flush()


def test_archives_that_escape_or_eat_memory_are_400(
    server: Server, client: Client, ctx: str
) -> None:
    sparse = io.BytesIO()
    with tarfile.open(fileobj=sparse, mode="w:gz", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("holes")
        info.type = tarfile.GNUTYPE_SPARSE
        t.addfile(info)
    chained = b"".join(_header(tarfile.XHDTYPE, 0) for _ in range(2000))
    deep_name = "/".join(["d"] * (tree.MAX_DEPTH + 1)) + "/f"
    cases = {
        # a pax header of 2 GiB of zeros: a 2 MB upload that tarfile would read whole
        "huge pax header": _gzip(_header(tarfile.XHDTYPE, 2 << 30), zeros=2 << 30),
        "huge long name": _gzip(_header(tarfile.GNUTYPE_LONGNAME, 1 << 30), zeros=1 << 30),
        "sparse member": sparse.getvalue(),
        "chained pax headers": _gzip(chained, zeros=1 << 20),
        "link out through a link": _tar(
            [_dir("a/b"), _link("a/b/up", "../../x"), _link("esc", "a/b/up/../..")]
        ),
        "dot-dot after a name": _tar([_dir("s"), _link("l", "s/../../etc")]),
        "too deep": _tar([_file(deep_name)]),
        "name too long": _tar([_file("n" * 300)]),
    }
    before = client.get(f"/contexts/{ctx}/files", params={"recursive": "true"}).json()
    for case, body in cases.items():
        started = time.monotonic()
        put = client.put(f"/contexts/{ctx}/archive?path=in", content=body)
        assert put.status_code == 400, (case, put.text)
        assert field_errors(put) == ["archive"], case
        assert time.monotonic() - started < 30, case
    assert client.get(f"/contexts/{ctx}/files", params={"recursive": "true"}).json() == before
    assert py(client, ctx, "import os; sorted(os.listdir('.'))") == []  # no staging left
    ok = _tar([_dir("a/b"), _link("a/b/up", "../c"), _link("a/l", "b/up"), _file("a/c", b"c")])
    assert client.put(f"/contexts/{ctx}/archive?path=in", content=ok).status_code == 200
    assert client.get(f"/contexts/{ctx}/files/in/a/l").content == b"c"
    assert client.get("/healthz").status_code == 200


def test_setuid_members_lose_the_bit_and_links_out_download_as_links(
    server: Server, client: Client, ctx: str
) -> None:
    setuid, data = _file("tool", b"#!/bin/sh\n")
    setuid.mode = 0o6755
    assert client.put(f"/contexts/{ctx}/archive", content=_tar([(setuid, data)])).status_code == 200
    assert py(client, ctx, "import os, stat; stat.S_IMODE(os.stat('tool').st_mode)") == 0o755
    other = client.context("python")
    try:
        client.put(f"/contexts/{other}/files/secret.txt", content=b"other's secret")
        targets = [str(server.state_dir / "api-token"), workdir(client, other) + "/secret.txt"]
        py(client, ctx, f"import os\nfor i, t in enumerate({targets!r}): os.symlink(t, f'l{{i}}')")
        got = client.get(f"/contexts/{ctx}/archive")
        assert server.token.encode() not in got.content
        with tarfile.open(fileobj=io.BytesIO(got.content)) as t:
            links = {m.name: (m.issym(), m.linkname, m.size) for m in t if m.name.startswith("l")}
            assert b"other's secret" not in b"".join(
                t.extractfile(m).read() for m in t if m.isreg()
            )
        assert links == {f"l{i}": (True, target, 0) for i, target in enumerate(targets)}
    finally:
        client.delete(f"/contexts/{other}")


def test_unpacking_keeps_no_memory_per_member(tmp_path: Path) -> None:
    """Members with nothing to write (``./``) kept tarfile's list of headers growing."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for _ in range(40_000):
            t.addfile(_dir("./")[0])
        last, data = _file("last.txt", b"x")
        t.addfile(last, io.BytesIO(data))
    raw.seek(0)
    staging = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    tracemalloc.start()
    try:
        done = archive._unpack(staging, raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.close(staging)
    assert done.files == 1 and (tmp_path / "last.txt").read_bytes() == b"x"
    assert peak < 8 << 20, peak


def test_link_targets_take_only_leading_dot_dots() -> None:
    assert archive.link_target(("a", "b", "l"), "../../x") == "../../x"
    assert archive.link_target(("l",), "./x/y") == "./x/y"
    for parts, target in [
        (("a", "l"), "../../x"),
        (("l",), "s/../.."),
        (("l",), "s/.."),
        (("a", "l"), "../s/../x"),
        (("l",), "/etc"),
        (("l",), ""),
    ]:
        with pytest.raises(FileError):
            archive.link_target(parts, target)


def _stalled_upload(server: Server, path: str) -> socket.socket:
    """A PUT that sent its headers and a first piece of the body, and then nothing."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
        "Content-Length: 100000000\r\n\r\n"
    )
    sock.sendall(head.encode() + _tar([_file("a")])[:10])
    return sock


@pytest.mark.slow
def test_slow_archive_clients_do_not_hold_up_other_file_calls(
    server: Server, client: Client, ctx: str
) -> None:
    other = client.context("python")
    stalled: list[socket.socket] = []
    try:
        client.put(f"/contexts/{other}/files/mine.txt", content=b"mine")
        stalled = [_stalled_upload(server, f"/contexts/{ctx}/archive") for _ in range(24)]
        time.sleep(1)  # every stalled unpack waits on its thread for more body
        started = time.monotonic()
        got = client.get(f"/contexts/{other}/files/mine.txt", timeout=20)
        assert got.content == b"mine"
        listed = client.get(f"/contexts/{other}/files", timeout=20)
        assert [item["path"] for item in listed.json()["items"]] == ["mine.txt"]
        assert time.monotonic() - started < 10
    finally:
        for sock in stalled:
            sock.close()
        client.delete(f"/contexts/{other}")
