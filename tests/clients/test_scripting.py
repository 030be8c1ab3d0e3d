"""The clients as a script drives them (real server, real processes)."""

from __future__ import annotations

import os

import pexpect

from tests.clients.test_cli import CELLBOX, cli

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
