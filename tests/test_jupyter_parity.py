"""Python contexts behave as ipykernel does where a user coming from Jupyter relies on it."""

from __future__ import annotations

from tests.conftest import Client


def test_forked_children_print_into_the_cell(client: Client):
    # A child made by os.fork() or multiprocessing (fork start method) prints with print()
    # as it does under Jupyter; a last line without newline survives os._exit too.
    code = (
        "import os, multiprocessing as mp, logging\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print('child line'); print('child tail', end=''); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print()\n"
        "p = mp.get_context('fork').Process(target=print, args=('from a process',))\n"
        "p.start(); p.join()\n"
        "def warn(): logging.getLogger('kid').warning('child log')\n"
        "p = mp.get_context('fork').Process(target=warn); p.start(); p.join()\n"
        "with mp.get_context('fork').Pool(1) as pool: pool.map(print, ['from a pool'])\n"
        "print('parent done')"
    )
    body = client.run(code)
    assert body["error"] is None, body["error"]
    assert body["logs"]["stdout"] == [
        "child line",
        "child tail",
        "from a process",
        "from a pool",
        "parent done",
    ]
    assert body["logs"]["stderr"] == ["child log"]


def test_history_tail_and_search(client: Client, ctx: str):
    # %history -l and -g read the session's inputs (no history database is kept).
    for code in ("a = 1", "b = 2", "a = 3"):
        client.run(code, context_id=ctx)
    assert client.run("%history -l 2", context_id=ctx)["logs"]["stdout"] == ["b = 2", "a = 3"]
    assert client.run("%history -n -l 1", context_id=ctx)["logs"]["stdout"] == [
        "   4: %history -l 2"
    ]
    assert client.run("%history -g a =", context_id=ctx)["logs"]["stdout"] == [
        "   1: a = 1",
        "   3: a = 3",
        "   6: %history -g a =",
    ]
    assert client.run("%history -g -l 1 a", context_id=ctx)["logs"]["stdout"] == ["%history -g a ="]
    rerun = client.run("%rerun", context_id=ctx)["logs"]["stdout"]
    assert rerun[:2] == ["=== Executing: ===", "%history -g -l 1 a"]
    assert client.run("b = 5\n%rerun -g b =\nb", context_id=ctx)["items"][0]["text"] == "2"


def test_xmode_minimal_drops_the_frames(client: Client, ctx: str):
    client.run("def fail():\n    raise RuntimeError('bad')", context_id=ctx)
    assert client.run("%xmode Minimal", context_id=ctx)["logs"]["stdout"] == [
        "Exception reporting mode: Minimal"
    ]
    error = client.run("fail()", context_id=ctx)["error"]
    assert error == {"name": "RuntimeError", "value": "bad", "traceback": "RuntimeError: bad\n"}
    chained = "try:\n    fail()\nexcept RuntimeError as e:\n    raise ValueError('wrapped') from e"
    assert client.run(chained, context_id=ctx)["error"]["traceback"] == "ValueError: wrapped\n"
    client.run("%xmode Context", context_id=ctx)
    traceback = client.run("fail()", context_id=ctx)["error"]["traceback"]
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert 'File "<cell 1>", line 2, in fail' in traceback


def test_binary_stdin_fails_as_clearly_as_text_stdin(client: Client, ctx: str):
    # Jupyter reads end of input there; here every read of standard input tells why it
    # cannot be, in the same words (not an AttributeError about an object of the worker).
    for read in ("sys.stdin.buffer.read()", "sys.stdin.buffer.readline()", "next(iter(sys.stdin))"):
        error = client.run(f"import sys; {read}", context_id=ctx, timeout_ms=10_000)["error"]
        assert error is not None, read
        assert error["name"] == "StdinNotImplementedError", (read, error)
        assert "without standard input" in error["value"]
