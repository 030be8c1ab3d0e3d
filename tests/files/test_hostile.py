"""Hostile work directories and requests: links, .., FIFOs, hard links, evil archives.

Each case gets its 400/404 and nothing outside the work directory changes: the code plants the
trap with the context's own rights, then the API (running as root) is asked to walk into it.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import secrets
import tarfile
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Client, Server
from tests.files.conftest import field_errors, py, workdir


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def untouched() -> Iterator[None]:
    """/etc/passwd and /etc/shadow are the same after the test."""
    before = {p: _digest(p) for p in ("/etc/passwd", "/etc/shadow")}
    yield
    assert {p: _digest(p) for p in before} == before


def test_symlinks_out_are_refused(
    server: Server, client: Client, ctx: str, untouched: None
) -> None:
    other = client.context("python")
    try:
        client.put(f"/contexts/{other}/files/secret.txt", content=b"other's secret")
        targets = {
            "token": str(server.state_dir / "api-token"),
            "server log": str(server.state_dir / "server.log"),
            "shadow": "/etc/shadow",
            "other": workdir(client, other) + "/secret.txt",
            "passwd": "/etc/passwd",
            "relative": "../../../../../../etc/passwd",
        }
        py(client, ctx, f"import os\nfor n, t in {targets!r}.items(): os.symlink(t, n)")
        for name in targets:
            got = client.get(f"/contexts/{ctx}/files/{name}")
            assert field_errors(got) == ["path"], (name, got.text)
            assert server.token not in got.text and "other's secret" not in got.text
        for name in ("passwd", "other"):  # writing through the link: refused, link kept
            assert field_errors(client.put(f"/contexts/{ctx}/files/{name}", content=b"x")) == [
                "path"
            ]
        assert client.get(f"/contexts/{other}/files/secret.txt").content == b"other's secret"
        assert py(client, ctx, "import os; os.readlink('passwd')") == "/etc/passwd"
        assert client.delete(f"/contexts/{ctx}/files/passwd").status_code == 204  # the link only
    finally:
        client.delete(f"/contexts/{other}")


def test_symlinked_parent_directory(client: Client, ctx: str, untouched: None) -> None:
    py(client, ctx, "import os; os.symlink('/etc', 'etc'); os.symlink('/', 'root')")
    assert field_errors(client.get(f"/contexts/{ctx}/files/etc/passwd")) == ["path"]
    assert field_errors(client.put(f"/contexts/{ctx}/files/etc/cellbox-x", content=b"x")) == [
        "path"
    ]
    assert field_errors(client.delete(f"/contexts/{ctx}/files/etc/hostname")) == ["path"]
    assert field_errors(client.get(f"/contexts/{ctx}/files", params={"path": "root"})) == ["path"]
    assert field_errors(client.get(f"/contexts/{ctx}/archive", params={"path": "etc"})) == ["path"]
    tar = _tar([_file("x.txt", b"x")])
    put = client.put(f"/contexts/{ctx}/archive", params={"path": "etc"}, content=tar)
    assert field_errors(put) == ["path"]
    assert not os.path.exists("/etc/cellbox-x") and not os.path.exists("/etc/x.txt")
    assert os.path.exists("/etc/hostname")


def _raw(server: Server, method: str, target: str) -> tuple[int, bytes]:
    """Send the request target exactly as written (no client-side dot-segment removal)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        connection.putheader("Authorization", f"Bearer {server.token}")
        connection.putheader("Content-Length", "1")
        connection.endheaders(b"x")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "tail",
    [
        "../../../../etc/passwd",
        "a/../../../../../etc/passwd",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "x%00y",
        "not-utf8-%FF.txt",
    ],
)
def test_dot_dot_absolute_and_nul_in_urls(
    server: Server, client: Client, ctx: str, tail: str, untouched: None
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        status, body = _raw(server, method, f"/contexts/{ctx}/files/{tail}")
        assert status == 400, (method, tail, body)
        assert b'"field":"path"' in body
    status, body = _raw(server, "GET", f"/contexts/{ctx}/files?path={tail}")
    assert status == 400, (tail, body)
    status, body = _raw(server, "PUT", f"/contexts/{ctx}/archive?path={tail}")
    assert status == 400, (tail, body)
    assert client.get(f"/contexts/{ctx}/files").json()["items"] == []  # nothing written


def test_fifo_socket_and_device_do_not_hang(client: Client, ctx: str) -> None:
    py(
        client,
        ctx,
        "import os, socket\nos.mkfifo('fifo')\n"
        "s = socket.socket(socket.AF_UNIX); s.bind('sock')\n"
        "open('plain.txt', 'w').write('p')",
    )
    c = client  # a read that blocked on the FIFO would hit the client's timeout
    c.timeout = httpx.Timeout(15)
    for name in ("fifo", "sock"):
        assert field_errors(c.get(f"/contexts/{ctx}/files/{name}")) == ["path"]
    names = [i["path"] for i in c.get(f"/contexts/{ctx}/files").json()["items"]]
    assert "plain.txt" in names and "fifo" not in names
    archive = c.get(f"/contexts/{ctx}/archive")
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert "fifo" not in tar.getnames() and "plain.txt" in tar.getnames()
    for name in ("fifo", "sock"):  # not a file to replace: refused, left as it is
        assert field_errors(c.put(f"/contexts/{ctx}/files/{name}", content=b"f")) == ["path"]
    assert py(client, ctx, "import os, stat; stat.S_ISFIFO(os.lstat('fifo').st_mode)")
    assert c.delete(f"/contexts/{ctx}/files/fifo").status_code == 204  # removed on request
    assert c.put(f"/contexts/{ctx}/files/fifo", content=b"f").status_code == 200
    assert c.get(f"/contexts/{ctx}/files/fifo").content == b"f"


def test_hard_links(client: Client, ctx: str, untouched: None) -> None:
    outcome = py(
        client,
        ctx,
        "import os\nout = []\n"
        "for src in ('/etc/passwd', '/etc/hostname'):\n"
        "    try: os.link(src, 'stolen'); out.append('linked')\n"
        "    except OSError as e: out.append(type(e).__name__)\n"
        "open('mine.txt', 'w').write('original')\nos.link('mine.txt', 'twin.txt')\nout",
    )
    assert "linked" not in outcome  # another filesystem: the kernel refuses
    assert client.get(f"/contexts/{ctx}/files/twin.txt").content == b"original"
    assert client.put(f"/contexts/{ctx}/files/twin.txt", content=b"new").status_code == 200
    # the upload replaced the name, it did not write into the shared inode
    assert py(client, ctx, "open('mine.txt').read(), open('twin.txt').read()") == (
        "original",
        "new",
    )


def _file(name: str, data: bytes = b"data") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.devmajor, info.devminor = 1, 3
    return info, None


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _evil_archives(marker: str) -> dict[str, list[tuple[tarfile.TarInfo, bytes | None]]]:
    escape = f"/tmp/{marker}"
    return {
        "absolute name": [_file("ok.txt"), _file(escape)],
        "dot-dot": [_file("ok.txt"), _file(f"../../../../../../tmp/{marker}")],
        "dot-dot inside": [_file("ok.txt"), _file(f"sub/../../{marker}")],
        "symlink out (absolute)": [_file("ok.txt"), _special("l", tarfile.SYMTYPE, "/etc")],
        "symlink out (relative)": [_file("ok.txt"), _special("d/l", tarfile.SYMTYPE, "../../x")],
        "symlink then write through it": [
            _special("sub", tarfile.DIRTYPE),
            _special("l", tarfile.SYMTYPE, "sub"),
            _file("l/through.txt"),
        ],
        "hard link out": [_file("ok.txt"), _special("h", tarfile.LNKTYPE, "/etc/passwd")],
        "hard link to nothing": [_special("h", tarfile.LNKTYPE, "missing.txt")],
        "character device": [_file("ok.txt"), _special("null", tarfile.CHRTYPE)],
        "block device": [_file("ok.txt"), _special("disk", tarfile.BLKTYPE)],
        "fifo": [_file("ok.txt"), _special("pipe", tarfile.FIFOTYPE)],
    }


def test_evil_archives_write_nothing(client: Client, ctx: str, untouched: None) -> None:
    marker = "cellbox-evil-" + secrets.token_hex(4)
    client.put(f"/contexts/{ctx}/files/target/keep.txt", content=b"keep")
    before = client.get(f"/contexts/{ctx}/files", params={"recursive": "true"}).json()
    for case, members in _evil_archives(marker).items():
        put = client.put(
            f"/contexts/{ctx}/archive", params={"path": "target"}, content=_tar(members)
        )
        assert put.status_code == 400, (case, put.text)
        assert field_errors(put) == ["archive"], case
        after = client.get(f"/contexts/{ctx}/files", params={"recursive": "true"}).json()
        assert after == before, case  # nothing of that archive was written
    root = workdir(client, ctx)
    for place in ("/tmp", os.path.dirname(root), os.path.dirname(os.path.dirname(root))):
        assert not os.path.exists(f"{place}/{marker}")
    assert py(client, ctx, f"import os; os.path.exists('/tmp/{marker}')") is False
    inside = _tar(
        [
            _file("a/real.txt", b"r"),
            _special("a/link", tarfile.SYMTYPE, "real.txt"),
            _special("a/hard", tarfile.LNKTYPE, "a/real.txt"),
        ]
    )
    good = client.put(f"/contexts/{ctx}/archive", params={"path": "target"}, content=inside)
    assert good.status_code == 200, good.text
    assert client.get(f"/contexts/{ctx}/files/target/a/link").content == b"r"
    assert client.get(f"/contexts/{ctx}/files/target/a/hard").content == b"r"


def test_the_api_has_the_context_rights_not_roots(client: Client, ctx: str) -> None:
    client.put(f"/contexts/{ctx}/files/up.txt", content=b"u")
    owner = py(client, ctx, "import os; os.stat('up.txt').st_uid == os.getuid() != 0")
    assert owner is True  # what the API writes belongs to the context
    py(
        client,
        ctx,
        "import os\nopen('locked.txt', 'w').write('secret')\nos.chmod('locked.txt', 0)\n"
        "os.makedirs('shut/in'); open('shut/in/f', 'w').write('f'); os.chmod('shut', 0)",
    )
    assert client.get(f"/contexts/{ctx}/files/locked.txt").status_code == 403
    assert client.get(f"/contexts/{ctx}/files/shut/in/f").status_code == 403
    assert client.put(f"/contexts/{ctx}/files/shut/new", content=b"x").status_code == 403
    assert client.get(f"/contexts/{ctx}/files", params={"path": "shut"}).status_code == 403
    py(client, ctx, "import os; os.chmod('shut', 0o755)")
    assert client.get(f"/contexts/{ctx}/files/shut/in/f").content == b"f"
