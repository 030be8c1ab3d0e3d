"""The clients as a script drives them: exit statuses of ``cellbox repl`` with cells piped in
and of ``cellbox exec`` (sys.exit, a script's name, --timeout, Ctrl-C), and how long the SDK
waits for an execution that names no timeout (real server, real processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pexpect
import pytest

from cellbox.client import AsyncClient, Client, RequestTimeout, core
from tests.clients.test_cli import CELLBOX, cli
from tests.conftest import Server

# ---- cellbox repl < cells ----


def test_cells_piped_into_the_repl_all_run_and_a_failed_one_makes_the_status_1(server):
    cells = "x = 1\n1/0\nprint(x + 1)\n"
    done = cli(server, "repl", stdin=cells)
    assert (done.returncode, done.stdout) == (1, "2\n"), done.stderr
    assert "ZeroDivisionError: division by zero" in done.stderr
    as_json = cli(server, "repl", "--json", stdin="1/0\n")
    assert as_json.returncode == 1 and '"ZeroDivisionError"' in as_json.stdout
    typescript = cli(server, "repl", "-l", "typescript", stdin="throw new Error('no')\n1 + 1\n")
    assert (typescript.returncode, typescript.stdout) == (1, "2\n"), typescript.stderr


def test_a_piped_cell_that_cannot_be_run_makes_the_status_2(server):
    done = cli(server, "repl", stdin=b"1/0\nprint('caf\xe9')\nprint('after')\n")
    assert (done.returncode, done.stdout) == (2, b"after\n"), done.stderr
    assert b"not UTF-8" in done.stderr and b"ZeroDivisionError" in done.stderr


def test_a_terminal_session_with_a_failed_cell_still_ends_with_0(server, tmp_path):
    env = {
        **os.environ,
        "CELLBOX_URL": server.url,
        "CELLBOX_API_KEY": server.token,
        "CELLBOX_HISTORY": str(tmp_path / "history"),
        "TERM": "dumb",
    }
    repl = pexpect.spawn(CELLBOX, ["repl"], env=env, encoding="utf-8", timeout=30)
    try:
        repl.expect_exact(">>> ")
        repl.sendline("1/0")
        repl.expect_exact("ZeroDivisionError")
        repl.expect_exact(">>> ")
        repl.sendeof()
        repl.expect(pexpect.EOF)
    finally:
        repl.close(force=True)
    assert repl.exitstatus == 0


def test_a_script_that_exits_cleanly_succeeds_and_the_repl_ends_at_exit(server):
    clean = cli(server, "exec", "print('done')\nimport sys\nsys.exit(0)")
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "done\n", "")
    for code in ("import sys; sys.exit()", "import sys; sys.exit(None)", "raise SystemExit"):
        assert cli(server, "exec", code).returncode == 0, code
    assert cli(server, "exec", "--json", "exit()").returncode == 0
    failing = cli(server, "exec", "import sys; sys.exit(3)")
    assert failing.returncode == 1 and "SystemExit: 3" in failing.stderr
    # As in Python's own REPL, exit() ends the session: the cells after it do not run.
    ended = cli(server, "repl", stdin="x = 1\nexit()\nprint(x)\n")
    assert (ended.returncode, ended.stdout) == (0, ""), ended.stderr
    after_failure = cli(server, "repl", stdin="1/0\nquit()\nprint(2)\n")
    assert (after_failure.returncode, after_failure.stdout) == (1, "")
    with_status = cli(server, "repl", stdin="import sys\nsys.exit('bye')\nprint(2)\n")
    assert (with_status.returncode, with_status.stdout) == (1, "")
    assert "SystemExit: bye" in with_status.stderr


def test_exec_given_a_script_s_name_runs_that_file(server, tmp_path):
    (tmp_path / "my script.py").write_text(
        "import sys\nprint('from the file', sys.version_info[0])"
    )
    (tmp_path / "app.ts").write_text("const n: number = 2;\nconsole.log(`ts ${n}`)")
    done = cli(server, "exec", str(tmp_path / "my script.py"))
    assert (done.returncode, done.stdout) == (0, "from the file 3\n"), done.stderr
    typescript = cli(server, "exec", str(tmp_path / "app.ts"))
    assert (typescript.returncode, typescript.stdout) == (0, "ts 2\n"), typescript.stderr
    # A name no file has is code, as before (and fails as such).
    missing = cli(server, "exec", "missing.py")
    assert missing.returncode == 1 and "name 'missing' is not defined" in missing.stderr


def test_ctrl_c_during_exec_interrupts_the_code_on_the_server(server, sdk):
    env = {**os.environ, "CELLBOX_URL": server.url, "CELLBOX_API_KEY": server.token}
    code = "x = 1\nimport time\nprint('go', flush=True)\ntime.sleep(60)"
    with sdk.contexts.create() as ctx:
        process = subprocess.Popen(
            [CELLBOX, "exec", "--context", ctx.id, code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdout.readline() == "go\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 1 and err.endswith("KeyboardInterrupt\n"), err
        # Nothing runs on there any more, and the context kept its state.
        started = time.monotonic()
        assert ctx.execute("x + 1", timeout=5).text == "2"
        assert time.monotonic() - started < 5


def test_a_timeout_out_of_range_is_refused_in_seconds(server):
    for given in ("700", "0", "-1", "nan", "soon"):
        done = cli(server, "exec", "--timeout", given, "1")
        assert done.returncode == 2 and "--timeout" in done.stderr, given
        assert "timeout_ms" not in done.stderr and "Traceback" not in done.stderr
    assert cli(server, "exec", "--timeout", "600", "1").returncode == 0


def test_a_client_without_a_timeout_for_calls_that_run_no_code(server):
    with Client(server.url, server.token, timeout=None) as client:
        with client.contexts.create() as ctx:
            assert ctx.execute("6 * 7").text == "42" and ctx.files.list() == []

    async def in_asyncio() -> None:
        async with AsyncClient(server.url, server.token, timeout=None) as client:
            async with client.contexts.create() as ctx:
                assert (await ctx.execute("6 * 7")).text == "42"

    asyncio.run(in_asyncio())


# ---- an execution without a timeout of its own ----

# The server's default timeout, longer than the client's own wait when it does not know it
# (shortened here, as if the server allowed more than a request may ask for).
SERVER_DEFAULT_S = 8
SLEEP_S = 3


@pytest.fixture(scope="module")
def patient() -> Iterator[Server]:
    srv = Server(
        default_timeout_ms=SERVER_DEFAULT_S * 1000, pool_python=1, pool_typescript=0
    ).start()
    yield srv
    srv.stop()
    srv.cleanup()


@pytest.fixture
def short_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's wait for an execution whose timeout it does not know: 2 s, not 630."""
    monkeypatch.setattr(core, "MAX_EXECUTION_S", 1.0)
    monkeypatch.setattr(core, "EXECUTION_SLACK_S", 1.0)


def test_an_execution_without_a_timeout_is_waited_for_as_long_as_the_server_allows(
    patient, short_fallback
):
    code = f"import time\ntime.sleep({SLEEP_S})\n'done'"
    with Client(patient.url, patient.token) as client:
        assert client.execute(code).text == "'done'"
        with client.contexts.create() as ctx:
            assert ctx.stream(code).result().text == "'done'"
            # The server's own timeout still ends a longer cell, and the client hears it.
            stopped = ctx.execute("import time\ntime.sleep(60)")
            assert stopped.error is not None and stopped.error.name == "TimeoutError"
            assert f"{SERVER_DEFAULT_S * 1000} ms" in stopped.error.value

    async def in_asyncio() -> None:
        async with AsyncClient(patient.url, patient.token) as client:
            assert (await client.execute(code)).text == "'done'"
            assert (await client.stream(code).result()).text == "'done'"

    asyncio.run(in_asyncio())


def test_a_server_that_answers_nothing_is_still_given_up_on(misbehaving):
    url = misbehaving(None)
    started = time.monotonic()
    with Client(url, "token", timeout=1) as client, pytest.raises(RequestTimeout):
        client.execute("1")
    assert time.monotonic() - started < 10
