"""The ``cellbox`` console script's client commands, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellbox.client import Client, ContextNotFound
from cellbox.serve_process import free_port

CELLBOX = str(Path(sys.executable).parent / "cellbox")


def cli(server, *args, stdin=None, key=None, url=None, timeout=60):
    env = {**os.environ, "CELLBOX_URL": url or server.url, "CELLBOX_API_KEY": key or server.token}
    text = not isinstance(stdin, bytes)  # bytes in, bytes out
    return subprocess.run(
        [CELLBOX, *args], input=stdin, capture_output=True, text=text, env=env, timeout=timeout
    )


def test_exec_code_prints_output_and_result(server):
    done = cli(server, "exec", "print('hello')\nimport sys; print('oops', file=sys.stderr)\n6 * 7")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n42\n" and done.stderr == "oops\n"


def test_exec_each_input_form_and_language(server, tmp_path):
    script = tmp_path / "script.ts"
    script.write_text("const n: number = 20;\nconsole.log(typeof n);\nn + 1")
    by_file = cli(server, "exec", "-f", str(script))
    assert (by_file.returncode, by_file.stdout) == (0, "number\n21\n"), by_file.stderr
    by_stdin = cli(server, "exec", "-", stdin="print(3 * 3)")
    assert (by_stdin.returncode, by_stdin.stdout) == (0, "9\n")
    by_flag = cli(server, "exec", "--language", "typescript", "[1, 2].map((x) => x * 2)")
    assert by_flag.stdout == "[ 2, 4 ]\n"


def test_exec_env_timeout_and_exit_status(server):
    env = cli(server, "exec", "--env", "MODE=test", "import os; print(os.environ['MODE'])")
    assert env.stdout == "test\n"
    failed = cli(server, "exec", "1 / 0")
    assert failed.returncode == 1
    assert "ZeroDivisionError: division by zero" in failed.stderr
    timed_out = cli(server, "exec", "--timeout", "0.5", "import time; time.sleep(10)")
    assert timed_out.returncode == 1 and "TimeoutError" in timed_out.stderr


def test_exec_in_a_context_keeps_state_and_new_contexts_are_removed(server):
    with Client(server.url, server.token) as client, client.contexts.create() as ctx:
        assert cli(server, "exec", "--context", ctx.id, "x = 5").returncode == 0
        assert cli(server, "exec", "-c", ctx.id, "x * 2").stdout == "10\n"
        before = {c.id for c in client.contexts.list()}
        assert cli(server, "exec", "1").returncode == 0
        assert {c.id for c in client.contexts.list()} == before
        kept = cli(server, "exec", "--keep", "y = 1")
        kept_id = kept.stderr.strip().removeprefix("context: ")
        assert client.contexts.get(kept_id).id == kept_id
        client.contexts.delete(kept_id)


def test_exec_json(server):
    done = cli(server, "exec", "--json", "print('a')\n1 + 1")
    body = json.loads(done.stdout)
    assert body["items"] == [{"is_primary": True, "text": "2"}]
    assert body["logs"] == {"stdout": ["a"], "stderr": []} and body["error"] is None
    failed = json.loads(cli(server, "exec", "--json", "raise KeyError('k')").stdout)
    assert failed["error"]["name"] == "KeyError"


def test_exec_save_writes_images_and_html(server, tmp_path):
    code = (
        "import matplotlib.pyplot as plt\nfrom IPython.display import HTML, display\n"
        "display(HTML('<b>bold</b>'))\nplt.plot([1, 2])"
    )
    done = cli(server, "exec", "--save", str(tmp_path), code)
    assert done.returncode == 0, done.stderr
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved == ["output-1.html", "output-2.png", "output-2.svg"]
    assert (tmp_path / "output-1.html").read_text() == "<b>bold</b>"
    assert (tmp_path / "output-2.png").read_bytes().startswith(b"\x89PNG")
    assert "<svg" in (tmp_path / "output-2.svg").read_text()
    assert f"saved {tmp_path / 'output-2.png'}" in done.stdout
    assert "Line2D" in done.stdout  # the cell's value, as text
    as_json = json.loads(cli(server, "exec", "--json", "--save", str(tmp_path), code).stdout)
    assert [Path(p).name for p in as_json["saved"]] == [
        "output-3.html",
        "output-4.png",
        "output-4.svg",
    ]


def test_contexts_commands(server):
    created = cli(server, "contexts", "create", "--language", "ts", "--json")
    info = json.loads(created.stdout)
    assert info["language"] == "typescript"
    listed = cli(server, "contexts", "ls")
    assert info["id"] in listed.stdout and "typescript" in listed.stdout
    assert info["id"] in [
        c["id"] for c in json.loads(cli(server, "contexts", "ls", "--json").stdout)
    ]
    assert (
        json.loads(cli(server, "contexts", "restart", info["id"], "--json").stdout)["id"]
        == info["id"]
    )
    assert cli(server, "contexts", "interrupt", info["id"]).stdout.strip() == info["id"]
    assert cli(server, "contexts", "rm", info["id"]).returncode == 0
    missing = cli(server, "contexts", "rm", info["id"])
    assert missing.returncode == 2 and "not found" in missing.stderr
    # One id that is not there does not keep the others from being deleted.
    others = [json.loads(cli(server, "contexts", "create", "--json").stdout)["id"] for _ in "ab"]
    mixed = cli(server, "contexts", "rm", others[0], info["id"], others[1], "--json")
    assert mixed.returncode == 2 and info["id"] in mixed.stderr
    assert json.loads(mixed.stdout) == {"deleted": others, "not_found": [info["id"]]}
    assert not {c["id"] for c in json.loads(cli(server, "contexts", "ls", "--json").stdout)} & {
        *others
    }
    with Client(server.url, server.token) as client, pytest.raises(ContextNotFound):
        client.contexts.get(info["id"])


def test_helpful_errors(server):
    wrong = cli(server, "contexts", "ls", key="wrong")
    assert wrong.returncode == 2
    assert "rejected the API token" in wrong.stderr and "CELLBOX_API_KEY" in wrong.stderr
    down = cli(server, "exec", "1", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2
    assert "cannot connect" in down.stderr and "cellbox serve" in down.stderr
    bad = cli(server, "exec", "--timeout", "0", "1")
    assert bad.returncode == 2 and "--timeout: must be above 0" in bad.stderr
    no_code = cli(server, "exec")
    assert no_code.returncode == 2 and "no code given" in no_code.stderr
    bad_env = cli(server, "exec", "--env", "NOEQUALS", "1")
    assert bad_env.returncode == 2 and "NAME=VALUE" in bad_env.stderr


def test_serve_still_parses():
    done = subprocess.run([CELLBOX, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "--port" in done.stdout


def test_a_stale_token_file_and_a_url_without_scheme_are_named(server, tmp_path):
    (tmp_path / "api-token").write_text("stale\n")
    env = {**os.environ, "CELLBOX_URL": server.url, "CELLBOX_STATE_DIR": str(tmp_path)}
    env.pop("CELLBOX_API_KEY", None)
    stale = subprocess.run(
        [CELLBOX, "contexts", "ls"], capture_output=True, text=True, env=env, timeout=60
    )
    assert stale.returncode == 2 and stale.stderr.count("\n") == 1, stale.stderr
    assert f"read from {tmp_path / 'api-token'}" in stale.stderr
    no_scheme = cli(server, "exec", "1", url=server.url.removeprefix("http://"))
    assert no_scheme.returncode == 2 and no_scheme.stderr.count("\n") == 1, no_scheme.stderr
    assert "must look like http://" in no_scheme.stderr and "CELLBOX_URL" in no_scheme.stderr


def test_output_read_by_a_reader_that_stops_early(server):
    # `cellbox exec … | head -1`: the reader goes away; cellbox stops quietly, as SIGPIPE would
    # stop another command, and still deletes the context it made.
    env = {**os.environ, "CELLBOX_URL": server.url, "CELLBOX_API_KEY": server.token}
    with Client(server.url, server.token) as client:
        before = {c.id for c in client.contexts.list()}
        process = subprocess.Popen(
            [CELLBOX, "exec", "for i in range(10**6): print(i)"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stdout.readline() == b"0\n"
        process.stdout.close()
        assert process.wait(60) == 141
        assert process.stderr is not None and process.stderr.read() == b""
        assert {c.id for c in client.contexts.list()} == before


def test_files_put_into_a_directory_and_an_empty_path(server, tmp_path):
    local = tmp_path / "notes.txt"
    local.write_text("n")
    with Client(server.url, server.token) as client, client.contexts.create() as ctx:
        put = cli(server, "files", "put", ctx.id, str(local), "docs/")
        assert put.returncode == 0 and put.stdout.startswith("docs/notes.txt"), put.stderr
        assert ctx.files.download("docs/notes.txt") == b"n"
        empty = cli(server, "files", "get", ctx.id, "", str(tmp_path / "x"))
        assert empty.returncode == 2 and "path is empty" in empty.stderr, empty.stderr
        assert "Traceback" not in empty.stderr


def test_code_that_is_not_utf8_is_named(server, tmp_path):
    script = tmp_path / "latin1.py"
    script.write_bytes(b'print("caf\xe9")\n')
    by_file = cli(server, "exec", "-f", str(script), stdin=b"")
    by_stdin = cli(server, "exec", "-", stdin=b'print("caf\xe9")')
    for done, where in ((by_file, str(script)), (by_stdin, "standard input")):
        assert done.returncode == 2, done.stderr
        assert done.stderr.count(b"\n") == 1, done.stderr
        assert f"{where} is not UTF-8 text (byte 0xe9".encode() in done.stderr
    with_bom = tmp_path / "bom.py"
    with_bom.write_bytes(b'\xef\xbb\xbfprint("caf\xc3\xa9")\n')
    assert cli(server, "exec", "-f", str(with_bom)).stdout == "café\n"
