"""Python contexts over HTTP: persistence, output, rich items, errors, env, input()."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import Client


def test_state_persists_and_counter_counts(client: Client, ctx: str):
    first = client.run("x = 10\ndef f(y):\n    return x * y", context_id=ctx)
    assert first["items"] == [] and first["error"] is None
    assert first["execution_count"] == 1
    second = client.run("import math\nf(3) + math.floor(0.5)", context_id=ctx)
    assert second["items"] == [{"is_primary": True, "text": "30"}]
    assert second["execution_count"] == 2
    third = client.run("class A: pass\nA.__name__", context_id=ctx)
    assert third["execution_count"] == 3
    assert client.run("A().__class__.__name__", context_id=ctx)["items"][0]["text"] == "'A'"


def test_errors_count_too_and_keep_state(client: Client, ctx: str):
    client.run("a = 1", context_id=ctx)
    failed = client.run("1/0", context_id=ctx)
    assert failed["execution_count"] == 2
    assert client.run("a", context_id=ctx)["execution_count"] == 3


def test_working_directory_persists(client: Client, ctx: str):
    client.run("import os; os.makedirs('sub', exist_ok=True); os.chdir('sub')", context_id=ctx)
    assert (
        client.run("import os; os.path.basename(os.getcwd())", context_id=ctx)["items"][0]["text"]
        == "'sub'"
    )


def test_stdout_lines(client: Client):
    body = client.run("print('a\\nb')\nprint('c', end='')")
    assert body["logs"]["stdout"] == ["a", "b", "c"]
    body = client.run("import sys\nsys.stdout.write('x\\r\\n\\ny')\nprint('err', file=sys.stderr)")
    assert body["logs"]["stdout"] == ["x", "", "y"]
    assert body["logs"]["stderr"] == ["err"]


def test_subprocess_output_is_captured(client: Client):
    code = "import os, subprocess\nos.system('echo from-shell')\nsubprocess.run(['echo', 'from-sub'])\nprint('after')"
    body = client.run(code)
    assert body["logs"]["stdout"] == ["from-shell", "from-sub", "after"]


def test_last_expression_and_semicolon(client: Client):
    assert client.run("1+1;")["items"] == []
    assert client.run("None")["items"] == []
    assert client.run("x = 5")["items"] == []
    assert client.run("'ab' * 2")["items"] == [{"is_primary": True, "text": "'abab'"}]


def test_display_emits_non_primary_items_in_order(client: Client):
    body = client.run("display('first')\nprint('between')\ndisplay({'k': 1})\n'last'")
    assert body["items"] == [
        {"is_primary": False, "text": "'first'"},
        {"is_primary": False, "text": "{'k': 1}"},
        {"is_primary": True, "text": "'last'"},
    ]
    assert body["logs"]["stdout"] == ["between"]
    imported = client.run("from IPython.display import display, HTML\ndisplay(HTML('<b>x</b>'))")
    assert imported["items"][0]["html"] == "<b>x</b>"


RICH = """
class Rich:
    def _repr_html_(self): return "<b>h</b>"
    def _repr_markdown_(self): return "**m**"
    def _repr_svg_(self): return "<svg xmlns='http://www.w3.org/2000/svg'></svg>"
    def _repr_latex_(self): return "$x^2$"
    def _repr_json_(self): return {"a": [1, 2]}
    def _repr_javascript_(self): return "console.log(1)"
    def __repr__(self): return "Rich()"
Rich()
"""


def test_rich_reprs(client: Client):
    (item,) = client.run(RICH)["items"]
    assert item == {
        "is_primary": True,
        "text": "Rich()",
        "html": "<b>h</b>",
        "markdown": "**m**",
        "svg": "<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        "latex": "$x^2$",
        "json": {"a": [1, 2]},
        "javascript": "console.log(1)",
    }


def test_binary_reprs_are_base64(client: Client):
    code = """
class Bin:
    def _repr_png_(self): return b"\\x89PNG fake"
    def _repr_jpeg_(self): return b"\\xff\\xd8 fake"
    def _repr_pdf_(self): return b"%PDF-1.4 fake"
Bin()
"""
    (item,) = client.run(code)["items"]
    assert base64.b64decode(item["png"]) == b"\x89PNG fake"
    assert base64.b64decode(item["jpeg"]) == b"\xff\xd8 fake"
    assert base64.b64decode(item["pdf"]) == b"%PDF-1.4 fake"


def test_mimebundle_and_extra(client: Client):
    code = """
class Plot:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"application/vnd.plotly.v1+json": {"data": []}, "text/plain": "Plot"}
Plot()
"""
    (item,) = client.run(code)["items"]
    assert item["text"] == "Plot"
    assert item["extra"] == {"application/vnd.plotly.v1+json": {"data": []}}


def test_dataframe_gives_html_and_text(client: Client):
    (item,) = client.run("import pandas as pd\npd.DataFrame({'a': [1, 2]})")["items"]
    assert "<table" in item["html"]
    assert "a" in item["text"] and "1" in item["text"]


def test_pil_image_gives_png(client: Client):
    (item,) = client.run("from PIL import Image\nImage.new('RGB', (4, 4), 'red')")["items"]
    assert base64.b64decode(item["png"]).startswith(b"\x89PNG")


def _is_figure(item: dict) -> bool:
    return base64.b64decode(item["png"]).startswith(b"\x89PNG") and "<svg" in item["svg"]


def test_matplotlib_figures_without_show(client: Client, ctx: str):
    body = client.run(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.figure()\nplt.bar([1], [2])\nNone",
        context_id=ctx,
    )
    assert len(body["items"]) == 2
    assert all(_is_figure(item) and not item["is_primary"] for item in body["items"])
    # Figures are closed once emitted: the next cell emits nothing.
    assert client.run("1", context_id=ctx)["items"] == [{"is_primary": True, "text": "1"}]


def test_matplotlib_show_emits_in_order(client: Client, ctx: str):
    body = client.run(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nprint('after')\n'end'",
        context_id=ctx,
    )
    figure, result = body["items"]
    assert _is_figure(figure) and not figure["is_primary"]
    assert result == {"is_primary": True, "text": "'end'"}
    assert body["logs"]["stdout"] == ["after"]


def test_matplotlib_figure_as_last_expression_once(client: Client):
    body = client.run(
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1])\nfig"
    )
    assert len(body["items"]) == 1
    assert _is_figure(body["items"][0])


def test_error_shape_and_plain_traceback(client: Client):
    body = client.run("def g():\n    return 1/0\ng()")
    error = body["error"]
    assert error["name"] == "ZeroDivisionError"
    assert error["value"] == "division by zero"
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert "return 1/0" in error["traceback"]
    assert "\x1b" not in error["traceback"]
    assert body["items"] == []


def test_name_error_and_output_before_it(client: Client):
    body = client.run("print('before')\nundefined_name")
    assert body["logs"]["stdout"] == ["before"]
    assert body["error"]["name"] == "NameError"
    assert body["error"]["value"] == "name 'undefined_name' is not defined"


def test_syntax_error(client: Client):
    body = client.run("def (:")
    assert body["error"]["name"] == "SyntaxError"
    assert "\x1b" not in body["error"]["traceback"]


def test_sys_exit_is_an_error_not_a_crash(client: Client, ctx: str):
    client.run("kept = 1", context_id=ctx)
    body = client.run("import sys; sys.exit(3)", context_id=ctx)
    assert body["error"]["name"] == "SystemExit"
    assert client.run("kept", context_id=ctx)["items"][0]["text"] == "1"


def test_no_ansi_anywhere(client: Client):
    body = client.run(
        "import warnings\nwarnings.warn('careful')\nprint('\\x1b[31mred\\x1b[0m')\nraise ValueError('\\x1b[1mbold')"
    )
    text = str(body)
    assert "\x1b" not in text
    assert body["logs"]["stdout"] == ["red"]


def test_input_fails_at_once(client: Client):
    body = client.run("input('name? ')", timeout_ms=10_000)
    assert body["error"] is not None
    assert (
        "input" in (body["error"]["name"] + body["error"]["value"]).lower()
        or "stdin" in (body["error"]["name"] + body["error"]["value"]).lower()
    )
    body = client.run("import sys; sys.stdin.read()", timeout_ms=10_000)
    assert body["error"] is not None


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'it\'s "quoted"',
        "line1\nline2",
        "back\\slash\\n",
        "'); import os; os._exit(1); ('",
        "ünïcødé ✓",
    ],
)
def test_env_vars_round_trip_and_are_scoped(client: Client, ctx: str, value: str):
    code = "import os, subprocess\nprint(repr(os.environ['SECRET_X']))\nsubprocess.run(['sh', '-c', 'printf %s \"$SECRET_X\" | wc -c'])"
    body = client.run(code, context_id=ctx, env_vars={"SECRET_X": value})
    assert body["error"] is None, body["error"]
    assert body["logs"]["stdout"][0] == repr(value)
    assert int(body["logs"]["stdout"][-1]) == len(value.encode())
    after = client.run("import os; 'SECRET_X' in os.environ", context_id=ctx)
    assert after["items"][0]["text"] == "False"


def test_env_vars_restore_previous_values(client: Client, ctx: str):
    client.run("import os; os.environ['KEEP'] = 'original'", context_id=ctx)
    body = client.run("import os; os.environ['KEEP']", context_id=ctx, env_vars={"KEEP": "temp"})
    assert body["items"][0]["text"] == "'temp'"
    assert client.run("os.environ['KEEP']", context_id=ctx)["items"][0]["text"] == "'original'"


def test_output_cap(server, client: Client):
    body = client.run("import sys\nfor i in range(3_000_000): print('0123456789')\n'done'")
    stdout = body["logs"]["stdout"]
    kept = sum(len(line) + 1 for line in stdout) - 1  # newlines between lines count too
    assert kept <= 10 << 20
    assert kept > (10 << 20) - 100
    assert "dropped" in body["logs"]["stderr"][-1]
    assert body["items"] == [{"is_primary": True, "text": "'done'"}]


def test_a_huge_single_line_is_capped_too(client: Client):
    body = client.run("print('x' * (30 << 20))")
    assert sum(len(line) for line in body["logs"]["stdout"]) <= 10 << 20
    assert "dropped" in body["logs"]["stderr"][-1]


def test_new_contexts_have_the_data_stack(client: Client):
    body = client.run("import numpy, pandas, matplotlib, PIL\nint(numpy.arange(3).sum())")
    assert body["items"][0]["text"] == "3"


def test_magics_and_shell_escapes(client: Client):
    body = client.run("!echo bang\n%time 1")
    assert "bang" in body["logs"]["stdout"]


def test_underscore_is_the_last_result(client: Client, ctx: str):
    client.run("21 * 2", context_id=ctx)
    assert client.run("_", context_id=ctx)["items"][0]["text"] == "42"


@pytest.mark.slow
def test_a_long_session_stays_quiet(client: Client, ctx: str):
    # Out keeps 1000 results as in IPython, then drops the oldest 200 (and their _N) the
    # way IPython does, but without IPython's warning on stderr.
    for i in range(1005):
        body = client.run(f"{i}", context_id=ctx)
        assert body["logs"]["stderr"] == [], (i, body["logs"])
    check = "len(Out), min(Out), [n for n in ('_1', '_200') if n in dir()], _201, _1005"
    body = client.run(check, context_id=ctx)
    assert body["logs"]["stderr"] == []
    assert body["items"][0]["text"] == "(805, 201, [], 200, 1004)"


def test_top_level_await(client: Client, ctx: str):
    body = client.run("import asyncio\nawait asyncio.sleep(0.01)\n'awaited'", context_id=ctx)
    assert body["items"] == [{"is_primary": True, "text": "'awaited'"}]
    body = client.run("async def f():\n    return 3\nawait f()", context_id=ctx)
    assert body["items"][0]["text"] == "3"


@pytest.mark.parametrize(
    "code,text",
    [
        ("  x = 5\n  x", "5"),  # an indented cell is dedented, as in IPython
        ("x = 1; y = 2\nx + y", "3"),  # a ';' inside the cell does not silence the value
        ("s = 'what?'\ns", "'what?'"),
        ("%time z = 4\nz", "4"),
    ],
)
def test_ipython_input_handling(client: Client, code: str, text: str):
    body = client.run(code)
    assert body["error"] is None, body["error"]
    assert body["items"][-1] == {"is_primary": True, "text": text}


def test_one_line_cells_ipython_rewrites(client: Client, ctx: str):
    # Automagic, macros and autocall still apply to a plain-looking one-line cell.
    assert client.run("pwd", context_id=ctx)["items"][0]["text"].startswith("'/")
    assert client.run("pwd = 5", context_id=ctx)["error"] is None
    assert client.run("pwd", context_id=ctx)["items"][0]["text"] == "5"  # shadowed now
    client.run("from IPython.core.macro import Macro\nbump = Macro('n = 1\\n')", context_id=ctx)
    client.run("bump", context_id=ctx)
    assert client.run("n", context_id=ctx)["items"][0]["text"] == "1"  # the macro ran
    client.run("%autocall 1", context_id=ctx)
    assert client.run("str 3", context_id=ctx)["items"][0]["text"] == "'3'"


def test_shell_hooks_the_code_sets_apply_to_the_next_cells(client: Client, ctx: str):
    # The worker reads these settings its own (faster) way: the code's changes still count,
    # whether it changes the list in place or puts a new one.
    setup = (
        "import ast\n"
        "class Doubler(ast.NodeTransformer):\n"
        "    def visit_Constant(self, node):\n"
        "        return ast.Constant(node.value * 2) if type(node.value) is int else node\n"
        "ip = get_ipython()\n"
        "ip.ast_transformers.append(Doubler())"
    )
    assert client.run(setup, context_id=ctx)["error"] is None
    assert client.run("20 + 1", context_id=ctx)["items"][0]["text"] == "42"
    client.run("ip.ast_transformers = []", context_id=ctx)
    assert client.run("20 + 1", context_id=ctx)["items"][0]["text"] == "21"
    client.run("ip.ast_transformers = [Doubler()]", context_id=ctx)
    assert client.run("3", context_id=ctx)["items"][0]["text"] == "6"
    client.run("ip.ast_transformers.clear()", context_id=ctx)
    upper = "ip.input_transformers_post = [lambda lines: [l.replace('ab', 'AB') for l in lines]]"
    client.run(upper, context_id=ctx)
    assert client.run("'abc'", context_id=ctx)["items"][0]["text"] == "'ABc'"
    client.run("ip.input_transformers_post = []", context_id=ctx)
    assert client.run("'abc'", context_id=ctx)["items"][0]["text"] == "'abc'"
    client.run("%automagic off", context_id=ctx)
    assert client.run("pwd", context_id=ctx)["error"]["name"] == "NameError"
    client.run("%automagic on", context_id=ctx)
    assert client.run("pwd", context_id=ctx)["items"][0]["text"].startswith("'/")
    client.run("%config InteractiveShell.ast_node_interactivity = 'all'", context_id=ctx)
    texts = [item["text"] for item in client.run("1\n2", context_id=ctx)["items"]]
    assert texts == ["1", "2"]


def test_statements_compile_and_run_one_by_one_as_in_ipython(client: Client, ctx: str):
    # A statement that does not compile stops the cell after the ones before it ran.
    body = client.run("x = 5\nreturn 1", context_id=ctx)
    assert body["error"]["name"] == "SyntaxError"
    assert "'return' outside function" in body["error"]["value"]
    assert client.run("x", context_id=ctx)["items"][0]["text"] == "5"
    # A __future__ import holds for the statements after it and for the next cells.
    future = "from __future__ import annotations\ndef f(a: nowhere): pass\nf.__annotations__"
    assert client.run(future, context_id=ctx)["items"][0]["text"] == "{'a': 'nowhere'}"
    later = "def g(a: elsewhere): pass\ng.__annotations__"
    assert client.run(later, context_id=ctx)["items"][0]["text"] == "{'a': 'elsewhere'}"
    # %autoawait is read again for each statement of the cell.
    define = "%autoawait True\nasync def h(): return 9\nawait h()"
    assert client.run(define, context_id=ctx)["items"][0]["text"] == "9"
    body = client.run("%autoawait False\nawait h()", context_id=ctx)
    assert "'await' outside function" in body["error"]["value"]
    client.run("%autoawait True", context_id=ctx)
    # Only a last expression statement shows its value.
    assert [item["text"] for item in client.run("1\n2", context_id=ctx)["items"]] == ["2"]
    assert client.run("for i in range(2): i", context_id=ctx)["items"] == []
    assert client.run("y = 3\ny\npass", context_id=ctx)["items"] == []


def test_callbacks_the_code_registers_run_in_order(client: Client, ctx: str):
    setup = (
        "seen = []\n"
        "ip = get_ipython()\n"
        "ip.events.register('pre_execute', lambda: seen.append('pre_execute'))\n"
        "ip.events.register('pre_run_cell', lambda info: seen.append(('pre', info.raw_cell)))\n"
        "ip.events.register('pre_run_cell', lambda info: seen.append('pre 2'))\n"
        "ip.events.register('post_execute', lambda: seen.append('post_execute'))\n"
        "def post(result):\n"
        "    seen.append(('post', result.result, result.execution_count))\n"
        "ip.events.register('post_run_cell', post)"
    )
    assert client.run(setup, context_id=ctx)["error"] is None
    body = client.run("6 * 7", context_id=ctx)
    assert client.run("seen[:]", context_id=ctx)["items"][0]["text"] == (
        "['post_execute',\n"
        " ('post', None, 1),\n"
        " 'pre_execute',\n"
        " ('pre', '6 * 7'),\n"
        " 'pre 2',\n"
        " 'post_execute',\n"
        f" ('post', 42, {body['execution_count']}),\n"
        " 'pre_execute',\n"
        " ('pre', 'seen[:]'),\n"
        " 'pre 2']"
    )
    failing = "ip.events.register('post_run_cell', lambda result: 1 / 0)\nseen.clear()"
    client.run(failing, context_id=ctx)
    body = client.run("'still runs'", context_id=ctx)
    # As IPython does: the cell's value, IPython's note, and the callback's error.
    assert body["items"][0]["text"] == "'still runs'"
    assert body["logs"]["stdout"][0].startswith("Error in callback <function <lambda>")
    assert body["error"]["name"] == "ZeroDivisionError"


def test_plain_values_keep_ipython_formatting(client: Client, ctx: str):
    client.run("%precision 2", context_id=ctx)
    assert client.run("3.14159", context_id=ctx)["items"][0]["text"] == "3.14"
    code = "get_ipython().display_formatter.formatters['text/html'].for_type(int, lambda v: f'<b>{v}</b>')"
    client.run(code, context_id=ctx)
    assert client.run("7", context_id=ctx)["items"][0] == {
        "is_primary": True,
        "text": "7",
        "html": "<b>7</b>",
    }


def test_escape_sequences_leave_plain_values_too(client: Client, ctx: str):
    # A plain value's text goes out as it is only when it has no escape character.
    assert client.run("'\\x1b[31mred'", context_id=ctx)["items"][0]["text"] == "'\\x1b[31mred'"
    code = (
        "get_ipython().display_formatter.formatters['text/plain'].float_format = '%.1f\\x1b[31m!'"
    )
    client.run(code, context_id=ctx)
    assert client.run("3.5", context_id=ctx)["items"][0]["text"] == "3.5!"
    assert client.run("7", context_id=ctx)["items"][0]["text"] == "7"


def test_input_history_variables(client: Client, ctx: str):
    for code in ("a = 1", "b = 2", "c = 3"):
        client.run(code, context_id=ctx)
    body = client.run("(_i, _ii, _iii, _i2, In[1:4], len(_ih))", context_id=ctx)
    assert body["items"][0]["text"] == (
        "('c = 3', 'b = 2', 'a = 1', 'b = 2', ['a = 1', 'b = 2', 'c = 3'], 5)"
    )
