"""The code's current directory: modules written there import, as in Jupyter, and IPython's
directory history starts there."""

from __future__ import annotations


def _value(client, code: str, context_id: str) -> str:  # noqa: ANN001 - tests.conftest.Client
    answer = client.run(code, context_id=context_id)
    assert answer["error"] is None, answer["error"]
    return answer["items"][0]["text"]


def test_python_imports_what_the_code_wrote_where_it_is(client, ctx) -> None:  # noqa: ANN001
    client.run("open('helper.py', 'w').write('def f():\\n    return 41 + 1\\n')", context_id=ctx)
    assert _value(client, "import helper; helper.f()", ctx) == "42"
    # the current directory, wherever the code moved it: not where the worker started
    code = "import os; os.makedirs('sub'); open('sub/deeper.py', 'w').write('X = 5')\n"
    code += "os.chdir('sub'); import deeper; deeper.X"
    assert _value(client, code, ctx) == "5"
    assert _value(client, "import sys; sys.path.count('/')", ctx) == "0"


def test_typescript_imports_what_the_code_wrote(client) -> None:  # noqa: ANN001
    ctx = client.context("typescript")
    try:
        code = "const fs = require('fs'); fs.writeFileSync('h.js', 'module.exports = 42');\n"
        code += "fs.writeFileSync('t.ts', 'export const z: number = 9');"
        client.run(code, context_id=ctx)
        assert _value(client, "require('./h.js')", ctx) == "42"
        assert _value(client, "(await import('./t.ts')).z", ctx) == "9"
    finally:
        client.delete(f"/contexts/{ctx}")


def test_cd_back_returns_to_the_contexts_directory(client) -> None:  # noqa: ANN001
    for fields in ({}, {"cwd": "/tmp"}):
        response = client.post("/contexts", json={"language": "python", **fields})
        body = response.json()
        try:
            assert (
                _value(client, "_dh[0] == __import__('pathlib').Path.cwd()", body["id"]) == "True"
            )
            client.run("%cd /usr", context_id=body["id"])
            client.run("%cd -", context_id=body["id"])
            assert _value(client, "%pwd", body["id"]) == repr(body["cwd"])
        finally:
            client.delete(f"/contexts/{body['id']}")
