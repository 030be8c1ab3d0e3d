"""``cellbox repl`` driven through a pseudo-terminal, as a person would type."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from cellbox.client import Client, ContextNotFound

CELLBOX = str(Path(sys.executable).parent / "cellbox")


def test_repl_multiline_interrupt_history_and_cleanup(server, tmp_path):
    history = tmp_path / "history"
    env = {
        **os.environ,
        "CELLBOX_URL": server.url,
        "CELLBOX_API_KEY": server.token,
        "CELLBOX_HISTORY": str(history),
        "TERM": "dumb",
    }
    repl = pexpect.spawn(CELLBOX, ["repl"], env=env, encoding="utf-8", timeout=30)
    try:
        repl.expect(r"context (ctx_\w+)")
        context_id = repl.match.group(1)
        repl.expect_exact(">>> ")
        repl.sendline("x = 41")
        repl.expect_exact(">>> ")
        repl.sendline("x + 1")
        repl.expect(r"42\r\n")
        repl.expect_exact(">>> ")

        # A block continues until an empty line.
        repl.sendline("for i in range(2):")
        repl.expect_exact("... ")
        repl.sendline("    print('line', i)")
        repl.expect_exact("... ")
        repl.sendline("")
        repl.expect(r"line 0\r\nline 1\r\n")
        repl.expect_exact(">>> ")

        # Ctrl-C interrupts the running cell; the session and its state stay.
        repl.sendline("import time; print('sleeping', flush=True); time.sleep(60)")
        repl.expect_exact("sleeping\r\n")  # the cell's output (the echoed line has "sleeping'")
        repl.sendintr()
        repl.expect("KeyboardInterrupt")
        repl.expect_exact(">>> ")
        repl.sendline("x")
        repl.expect(r"41\r\n")
        repl.expect_exact(">>> ")

        # Ctrl-C at the prompt drops the line, Ctrl-D quits.
        repl.sendintr()
        repl.expect_exact(">>> ")
        repl.sendeof()
        repl.expect(pexpect.EOF)
    finally:
        repl.close(force=True)
    assert repl.exitstatus == 0
    assert "x = 41" in history.read_text()
    with Client(server.url, server.token) as client, pytest.raises(ContextNotFound):
        client.contexts.get(context_id)
    assert re.fullmatch(r"ctx_\w+", context_id)
