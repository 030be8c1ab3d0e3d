"""Pure parts of the client and CLI: parsing, folding, error mapping, configuration."""

from __future__ import annotations

import base64
import io

import pytest

from cellbox.client import (
    APIError,
    ConfigurationError,
    ContextNotFound,
    Error,
    Execution,
    ExecutionError,
    Exit,
    FileNotFound,
    Forbidden,
    InsufficientStorage,
    InvalidRequest,
    Item,
    NotFound,
    PayloadTooLarge,
    Result,
    ServiceUnavailable,
    Stderr,
    Stdout,
    TooManyContexts,
    Unauthorized,
)
from cellbox.client.calls import execute_body, file_path
from cellbox.client.core import Config, is_local
from cellbox.client.errors import error_for
from cellbox.client.models import FileInfo, fold_events, parse_event
from cellbox.commands.output import LivePrinter
from cellbox.commands.repl import is_complete, read_cell
from cellbox.mcp_server import MAX_TEXT_CHARS, clipped


def test_item_round_trip_decodes_binary_formats():
    png = b"\x89PNG\r\n\x1a\nrest"
    raw = {"is_primary": True, "text": "fig", "png": base64.b64encode(png).decode(), "json": [1]}
    item = Item.from_json(raw)
    assert item.png == png and item.text == "fig" and item.json == [1] and item.is_primary
    assert item.formats == ["text", "png", "json"]
    assert item.to_json() == raw


def test_execution_shortcuts():
    execution = Execution.from_json(
        {
            "context_id": "ctx_1",
            "items": [{"is_primary": False, "text": "shown"}, {"is_primary": True, "text": "3"}],
            "logs": {"stdout": ["a", "b"], "stderr": []},
            "error": None,
            "execution_count": 2,
        }
    )
    assert execution.text == "3" and execution.primary is execution.results[1]
    assert execution.stdout == "a\nb\n" and execution.stderr == "" and execution.ok


def test_events_fold_into_the_execution():
    raw = [
        {"type": "stdout", "data": "hi"},
        {"type": "stderr", "data": "warn"},
        {"type": "result", "data": {"is_primary": True, "text": "1"}},
        {"type": "error", "data": "E: v", "name": "E", "value": "v", "traceback": "tb"},
        {"type": "exit", "code": 1, "context_id": "ctx_2", "execution_count": 5},
    ]
    events = [parse_event(event) for event in raw]
    assert [type(event) for event in events] == [Stdout, Stderr, Result, Error, Exit]
    execution = fold_events(events)
    assert execution.logs.stdout == ["hi"] and execution.logs.stderr == ["warn"]
    assert execution.error is not None and str(execution.error) == "E: v"
    assert (execution.context_id, execution.execution_count) == ("ctx_2", 5)
    with pytest.raises(ValueError, match="without an exit"):
        fold_events(events[:-1])


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (400, "Invalid request", InvalidRequest),
        (401, "missing or invalid API token", Unauthorized),
        (403, "permission denied: a.txt", Forbidden),
        (404, "context ctx_x not found", ContextNotFound),
        (404, "file not found: a.txt", FileNotFound),
        (404, "directory not found: d", FileNotFound),
        (404, "Not Found", NotFound),
        (413, "too large", PayloadTooLarge),
        (429, "too many contexts", TooManyContexts),
        (503, "node n2 is unreachable", ServiceUnavailable),
        (507, "quota", InsufficientStorage),
        (500, "boom", APIError),
    ],
)
def test_error_for_status(status, message, kind):
    body = f'{{"message": "{message}", "errors": [{{"field": "f", "error": "e"}}]}}'.encode()
    error = error_for(status, body)
    assert type(error) is kind and error.message == message and error.status == status
    if kind is InvalidRequest:
        assert [(e.field, e.error) for e in error.errors] == [("f", "e")]


def test_error_for_a_body_that_is_not_json():
    error = error_for(502, b"<html>bad gateway</html>")
    assert error.message == "<html>bad gateway</html>" and error.status == 502


def test_config_order_and_token_file(tmp_path):
    (tmp_path / "api-token").write_text("from-file\n")
    env = {"CELLBOX_STATE_DIR": str(tmp_path)}
    assert Config.resolve(environ=env).api_key == "from-file"
    assert Config.resolve(environ={**env, "CELLBOX_API_KEY": "from-env"}).api_key == "from-env"
    assert Config.resolve(api_key="arg", environ=env).api_key == "arg"
    remote = Config.resolve(environ={**env, "CELLBOX_URL": "http://cellbox.example:8000/"})
    assert remote.url == "http://cellbox.example:8000" and remote.api_key is None
    assert is_local("http://localhost:1") and is_local("http://[::1]:8000")
    assert not is_local("http://192.0.2.2:8000")


def test_config_says_where_the_key_came_from(tmp_path):
    (tmp_path / "api-token").write_text("from-file\n")
    env = {"CELLBOX_STATE_DIR": str(tmp_path)}
    assert Config.resolve(environ=env).key_source == str(tmp_path / "api-token")
    assert Config.resolve(environ={**env, "CELLBOX_API_KEY": "k"}).key_source == "CELLBOX_API_KEY"
    assert Config.resolve(api_key="k", environ=env).key_source == "argument"
    assert Config.resolve(environ={"CELLBOX_STATE_DIR": str(tmp_path / "no")}).key_source == ""


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "localhost:8000", "ftp://host/", "http://"])
def test_a_url_that_is_not_http_is_refused_at_once(url):
    with pytest.raises(ConfigurationError, match="must look like http://127.0.0.1:8000"):
        Config.resolve(url, "k", environ={})
    with pytest.raises(ConfigurationError, match="CELLBOX_URL"):
        Config.resolve(environ={"CELLBOX_URL": url})


def test_request_shapes():
    body = execute_body("1", None, "ctx_1", {"A": "b"}, 1.5)
    assert body == {"code": "1", "context_id": "ctx_1", "env_vars": {"A": "b"}, "timeout_ms": 1500}
    assert file_path("ctx_1", "dir/a b#.txt") == "/contexts/ctx_1/files/dir/a%20b%23.txt"
    assert file_path("ctx_1", "../x") == "/contexts/ctx_1/files/%2E%2E/x"
    assert file_path("ctx_1", "") == "/contexts/ctx_1/files/"  # the server says what is wrong


@pytest.mark.parametrize(
    ("fields", "readable"),
    [
        ({"text": "42"}, "42"),
        ({"text": "<IPython.core.display.Markdown object>", "markdown": "**b**"}, "**b**"),
        ({"text": "<Foo object at 0x7f3a>", "latex": "$x$"}, "$x$"),
        (
            {"text": "<IPython.core.display.HTML object>", "html": "<b>"},
            "<IPython.core.display.HTML object>",
        ),
        ({"text": "<svg object>"}, "<svg object>"),
        ({"png": b"x"}, None),
    ],
)
def test_readable_text_skips_default_reprs(fields, readable):
    assert Item(**fields).readable == readable


def test_file_info_parses_the_timestamp():
    info = FileInfo.from_json(
        {"path": "a", "type": "file", "size": 3, "modified": "2026-11-30T10:00:00Z"}
    )
    assert info.modified is not None and info.modified.year == 2026
    assert info.to_json()["modified"] == "2026-11-30T10:00:00Z"


@pytest.mark.parametrize(
    ("source", "language", "complete"),
    [
        ("x = 1", "python", True),
        ("for i in range(3):", "python", False),
        ("for i in range(3):\n    print(i)", "python", False),
        ("for i in range(3):\n    print(i)\n", "python", True),
        ("%pip install x", "python", True),
        ("def f(", "python", False),
        ("const a = 1", "typescript", True),
        ("function f() {", "typescript", False),
        ("const s = '{' // {", "typescript", True),
        ("const t = `a", "typescript", False),
        ("/* open", "typescript", False),
    ],
)
def test_is_complete(source, language, complete):
    assert is_complete(source, language) is complete


def test_read_cell_continues_until_an_empty_line():
    answers = iter(["if True:", "    x = 1", "    y = 2", ""])
    prompts = []

    def ask(prompt):
        prompts.append(prompt)
        return next(answers)

    assert read_cell("python", ask) == "if True:\n    x = 1\n    y = 2"
    assert prompts == [">>> ", "... ", "... ", "... "]


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        # Node's stack starts with the error, Python's traceback ends with it: said once.
        (
            ExecutionError("Error", "boom", "Error: boom\n    at c:1:7\n"),
            "Error: boom\n    at c:1:7\n",
        ),
        (
            ExecutionError("KeyError", "'k'", "Traceback\nKeyError: 'k'\n"),
            "Traceback\nKeyError: 'k'\n",
        ),
        (ExecutionError("KeyboardInterrupt", "", "Traceback\nKeyboardInterrupt\n"), None),
        # A timeout's traceback ends in the interrupt that stopped the code: the error follows.
        (
            ExecutionError("TimeoutError", "timed out", "Traceback\nKeyboardInterrupt\n"),
            "Traceback\nKeyboardInterrupt\nTimeoutError: timed out\n",
        ),
    ],
)
def test_live_printer_says_the_error_once(error, shown):
    out, err = io.StringIO(), io.StringIO()
    LivePrinter(None, out, err).show(Error(error))
    assert err.getvalue() == (shown or error.traceback) and out.getvalue() == ""


def test_mcp_output_is_cut_in_the_middle():
    assert clipped("short") == "short"
    long = "a" * MAX_TEXT_CHARS + "b" * 1000
    cut = clipped(long)
    assert len(cut) < MAX_TEXT_CHARS + 200 and "1000 characters cut" in cut
    assert cut.startswith("a" * (MAX_TEXT_CHARS // 2)) and cut.endswith("b" * 1000)
