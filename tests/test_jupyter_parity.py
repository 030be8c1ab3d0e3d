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


def _value(client: Client, ctx: str, code: str) -> str:
    """The ``text`` of the cell's value (it must have one and not fail)."""
    body = client.run(code, context_id=ctx)
    assert body["error"] is None and body["items"], body
    return body["items"][0]["text"]


def test_out_and_numbered_results_hold_each_cells_value(client: Client, ctx: str):
    # As in ipykernel: Out[N] (also _oh) and _N are the value of cell N; a cell whose value
    # is not shown (None, a trailing ';', no expression, an error) gets no number there.
    cells = ["6 * 7", "x = 1", "'hidden';", "None", "print('p')", "[1, 2]", "1/0"]
    counts = [client.run(code, context_id=ctx)["execution_count"] for code in cells]
    assert counts == [1, 2, 3, 4, 5, 6, 7]
    assert _value(client, ctx, "sorted(Out), _oh is Out, Out[1], _1, Out[6], _6") == (
        "([1, 6], True, 42, 42, [1, 2], [1, 2])"
    )
    names = "[n for n in ('_2', '_3', '_4', '_5', '_7') if n in dir()]"
    assert _value(client, ctx, names) == "[]"
    assert _value(client, ctx, "_8[1:4], _9") == "((True, 42, 42), [])"
    # Out itself is not kept in Out, nor made _: no cycle, as in IPython.
    assert _value(client, ctx, "Out").startswith("{1: 42,")
    assert _value(client, ctx, "_ is Out, sorted(Out)") == "(False, [1, 6, 8, 9, 10])"


def test_last_three_results_skip_what_was_not_shown(client: Client, ctx: str):
    for code in ("'a'", "'b'", "'c'", "'d';", "None", "e = 'e'"):
        client.run(code, context_id=ctx)
    assert _value(client, ctx, "_, __, ___") == "('c', 'b', 'a')"
    assert _value(client, ctx, "___") == "'b'"  # the tuple, then 'c', then 'b'


def test_an_underscore_the_code_assigned_stays_its_own(client: Client, ctx: str):
    # As in IPython: once the code assigns _ (a throwaway name, gettext's alias), results
    # no longer overwrite _, __ and ___, while _N and Out[N] still get every result.
    client.run("'a'", context_id=ctx)
    client.run("_ = 'mine'", context_id=ctx)
    body = client.run("40 + 2", context_id=ctx)
    assert _value(client, ctx, "_, _3, Out[3]") == "('mine', 42, 42)"
    assert body["execution_count"] == 3
    # Deleting the three hands them back to the results.
    client.run("del _, __, ___", context_id=ctx)
    client.run("'b'", context_id=ctx)
    assert _value(client, ctx, "_") == "'b'"


def test_the_cell_number_is_the_execution_count(client: Client, ctx: str):
    # Every execution counts (an empty one too), so _N, Out[N], _iN and In[N] name the
    # execution whose execution_count is N.
    assert client.run("", context_id=ctx)["execution_count"] == 1
    assert client.run("7", context_id=ctx)["execution_count"] == 2
    code = "_2, Out[2], In[2], _i2, In[3], len(In)"
    body = client.run(code, context_id=ctx)
    assert body["execution_count"] == 3
    assert body["items"][0]["text"] == f"(7, 7, '7', '7', {code!r}, 4)"


def test_reset_clears_the_results(client: Client, ctx: str):
    for code in ("a = 1", "a * 5", "a * 6"):
        client.run(code, context_id=ctx)
    body = client.run("%reset -f out", context_id=ctx)
    assert body["logs"]["stdout"] == ["Flushing output cache (2 entries)"]
    assert _value(client, ctx, "Out, [n for n in ('_2', '_3') if n in dir()], _, a") == (
        "({}, [], '', 1)"
    )
    assert _value(client, ctx, "a * 7") == "7"
    body = client.run("%reset -f", context_id=ctx)
    assert body["error"] is None and body["execution_count"] == 7
    check = "Out, _oh is Out, [n for n in ('a', '_5', '_6', '_') if n in dir()]"
    assert _value(client, ctx, check) == "({}, True, [])"
    assert _value(client, ctx, "_8[1:], sorted(Out)") == "((True, []), [8])"  # numbering goes on


def test_a_fresh_process_starts_the_results_afresh(client: Client, ctx: str):
    for code in ("10", "20"):
        client.run(code, context_id=ctx)
    died = client.run("import os; os._exit(3)", context_id=ctx)
    assert died["error"]["name"] == "ContextDied"
    body = client.run("len(Out), len(In), [n for n in ('_1', '_2') if n in dir()]", context_id=ctx)
    assert body["execution_count"] == 1
    assert body["items"][0]["text"] == "(0, 2, [])"
    assert _value(client, ctx, "_1") == "(0, 2, [])"
    assert client.post(f"/contexts/{ctx}/restart").status_code == 200
    body = client.run("Out, [n for n in ('_1', '_2') if n in dir()]", context_id=ctx)
    assert body["execution_count"] == 1
    assert body["items"][0]["text"] == "({}, [])"


def test_history_prints_the_outputs_still_in_out(client: Client, ctx: str):
    for code in ("1 + 1", "'x' * 3", "None"):
        client.run(code, context_id=ctx)
    assert client.run("%history -o -n 1-3", context_id=ctx)["logs"]["stdout"] == [
        "   1: 1 + 1",
        "2",
        "   2: 'x' * 3",
        "'xxx'",
        "   3: None",
    ]
    assert client.run("%history -o -g x", context_id=ctx)["logs"]["stdout"] == [
        "   2: 'x' * 3",
        "'xxx'",
        "   5: %history -o -g x",
    ]
    client.run("%reset -f out", context_id=ctx)
    assert client.run("%history -o -n 1-2", context_id=ctx)["logs"]["stdout"] == [
        "   1: 1 + 1",
        "   2: 'x' * 3",
    ]


def test_cd_alone_goes_to_the_contexts_home(client: Client, ctx: str):
    # As ``cd`` in a shell: $HOME, the context's own directory (not the server's home).
    body = client.run(
        "%mkdir sub\n%cd sub\n%cd\nimport os\nos.getcwd() == os.environ['HOME']", context_id=ctx
    )
    assert body["items"][0]["text"] == "True", body
    assert body["logs"]["stdout"][-1] == client.get(f"/contexts/{ctx}").json()["cwd"]


def test_load_and_recall_print_what_jupyter_puts_in_the_next_cell(client: Client, ctx: str):
    client.run("%%writefile helper.py\ndef hello():\n    return 'hi'", context_id=ctx)
    assert client.run("%load helper.py", context_id=ctx)["logs"]["stdout"] == [
        "# %load helper.py",
        "def hello():",
        "    return 'hi'",
    ]
    assert client.run("%recall 1", context_id=ctx)["logs"]["stdout"] == [
        "%%writefile helper.py",
        "def hello():",
        "    return 'hi'",
    ]


def test_store_outlives_a_restart(client: Client, ctx: str):
    # %store (ipykernel loads it) keeps its database in the context's own directory, as
    # Jupyter's ~/.ipython outlives the kernel.
    client.run("kept = [1, 2]", context_id=ctx)
    assert client.run("%store kept", context_id=ctx)["logs"]["stdout"] == ["Stored 'kept' (list)"]
    assert client.post(f"/contexts/{ctx}/restart").status_code == 200
    assert client.run("%store -r kept\nkept", context_id=ctx)["items"][0]["text"] == "[1, 2]"


def test_a_new_context_starts_as_a_fresh_kernel(client: Client, ctx: str):
    # As in a fresh ipykernel, whatever the worker ran before (the zygote's warm-up and its
    # own, silent cells): no result kept, one empty input, the first cell numbered 1.
    body = client.run(
        "(repr(_), repr(__), repr(___), Out, In[:1], _i, _ii, _iii,"
        " sorted(k for k in dir() if k.startswith('_') and k[1:].isdigit()),"
        " get_ipython().execution_count)",
        context_id=ctx,
    )
    assert body["error"] is None and body["execution_count"] == 1, body
    assert body["items"][0]["text"] == "(\"''\", \"''\", \"''\", {}, [''], '', '', '', [], 2)"
