"""TypeScript contexts read as the user wrote them: positions in cells whose TypeScript needs
generated code (enum, namespace, parameter properties)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Client


@pytest.fixture
def ts(client: Client) -> Iterator[str]:
    context_id = client.context("typescript")
    yield context_id
    client.delete(f"/contexts/{context_id}")


GENERATING = {
    "enum": "enum Kind { A, B }",
    "namespace": "namespace Space {\n  export const v = 1\n}",
    "parameter-property": "class Point {\n  constructor(private x: number, public y = 2) {}\n}",
}


@pytest.mark.parametrize("head", GENERATING.values(), ids=GENERATING.keys())
def test_errors_in_a_cell_with_generated_code_name_the_users_lines(
    client: Client, ts: str, head: str
) -> None:
    lines = head.count("\n") + 1
    body = client.run(
        f"{head}\n\nfunction fail(): never {{\n\n  throw new Error('here')\n}}\nfail()",
        context_id=ts,
    )
    assert body["error"]["name"] == "Error", body
    throw_at, call_at = lines + 4, lines + 6
    assert body["error"]["traceback"] == (
        f"Error: here\n    at fail (cell-1:{throw_at}:9)\n    at cell-1:{call_at}:1"
    )
    later = client.run("try { fail() } catch (e) { console.log(e.stack) }", context_id=ts)
    assert later["logs"]["stdout"][1] == f"    at fail (cell-1:{throw_at}:9)", later
    compile_error = client.run(f"{head}\n\nconst twice = 1; const twice = 2", context_id=ts)
    assert compile_error["error"]["traceback"] == (
        f"cell-3:{lines + 2}\nconst twice = 1; const twice = 2\n{' ' * 23}^\n\n"
        "SyntaxError: Identifier 'twice' has already been declared"
    ), compile_error
