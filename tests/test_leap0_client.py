"""The public leap0 SDK's code-interpreter client, unchanged, against the real server."""

from __future__ import annotations

import sys
import typing

import pytest
import typing_extensions

from tests.conftest import Server


@pytest.fixture
def leap0_client(server: Server, monkeypatch: pytest.MonkeyPatch):
    if sys.version_info < (3, 12):
        # pydantic refuses typing.TypedDict before 3.12; the SDK imports it from typing.
        monkeypatch.setattr(typing, "TypedDict", typing_extensions.TypedDict)
    from leap0._sync import code_interpreter
    from leap0._sync._transport import Transport

    # The SDK builds https://<sandbox>.<domain> URLs; point that builder at this server.
    monkeypatch.setattr(code_interpreter, "sandbox_base_url", lambda *_a, **_k: server.url)
    transport = Transport(api_key=server.token, base_url=server.url)
    yield code_interpreter.CodeInterpreterClient(transport, sandbox_domain="local")
    transport.close()


def test_execute_and_contexts(leap0_client):
    assert leap0_client.health("sb") is True
    context = leap0_client.create_context("sb", language="python")
    assert context.id and context.cwd
    leap0_client.execute("sb", code="x = 20", context_id=context.id)
    result = leap0_client.execute(
        "sb",
        code="import os\nprint(os.environ['GREETING'])\nx * 2 + 2",
        context_id=context.id,
        env_vars={"GREETING": "hi"},
        timeout_ms=10_000,
    )
    assert result.main_text == "42"
    assert result.logs.stdout == ["hi"]
    assert result.error is None
    assert result.execution_count == 2
    assert result.context_id == context.id
    ids = [c.id for c in leap0_client.list_contexts("sb")]
    assert context.id in ids
    assert leap0_client.get_context("sb", context.id).id == context.id
    failed = leap0_client.execute("sb", code="1/0", context_id=context.id)
    assert failed.error.name == "ZeroDivisionError"
    leap0_client.delete_context("sb", context.id)
    assert context.id not in [c.id for c in leap0_client.list_contexts("sb")]


def test_stream(leap0_client):
    events = list(leap0_client.execute_stream("sb", code="print('a')\nprint('b')\n1/0"))
    kinds = [str(getattr(e.type, "value", e.type)) for e in events]
    assert kinds == ["stdout", "stdout", "error", "exit"]
    assert [e.data for e in events[:2]] == ["a", "b"]
    assert events[-1].code == 1


def test_typescript(leap0_client):
    context = leap0_client.create_context("sb", language="typescript")
    leap0_client.execute(
        "sb", code="const n: number = 41", context_id=context.id, language="typescript"
    )
    result = leap0_client.execute("sb", code="n + 1", context_id=context.id, language="typescript")
    assert result.main_text == "42"
    leap0_client.delete_context("sb", context.id)
