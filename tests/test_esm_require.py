"""require() and import() of packages whose ``exports`` offer only an "import" condition,
from cells and from CommonJS packages' own require(), in TypeScript contexts over the
real API. The local packages are written into the
context's ``node_modules`` through the files API; one real npm package of that kind is
installed with ``npm install`` from a cell."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import Client

PACKAGES = {
    "imponly": {
        "package.json": {
            "name": "imponly",
            "version": "1.0.0",
            "type": "module",
            "exports": {".": {"import": "./index.js"}, "./sub": {"import": "./sub.js"}},
        },
        "index.js": "export default function hi() { return 'hi'; }\nexport const x = 42;\n",
        "sub.js": "export const sub = 'sub';\n",
    },
    # top-level await: require() cannot run it, import() can
    "tla": {
        "package.json": {"name": "tla", "type": "module", "exports": {"import": "./index.js"}},
        "index.js": "export const v = await Promise.resolve(7);\n",
    },
    # an ordinary dual package: require() keeps taking its CommonJS side
    "dual": {
        "package.json": {
            "name": "dual",
            "exports": {"import": "./esm.mjs", "require": "./cjs.cjs"},
        },
        "esm.mjs": "export const kind = 'esm';\n",
        "cjs.cjs": "exports.kind = 'cjs';\n",
    },
    # CommonJS packages whose own require() names an import-only package; one is loaded
    # by require(), the other by import, so neither finds the other's work cached
    "cjsreq": {
        "package.json": {"name": "cjsreq", "main": "lib.js"},
        "lib.js": (
            "const m = require('imponly');\n"
            "exports.v = m.default() + m.x;\n"
            "exports.sub = require('imponly/sub').sub;\n"
            "exports.dual = require('dual').kind;\n"
            "exports.file = require.resolve('imponly');\n"
        ),
    },
    "cjsimp": {
        "package.json": {"name": "cjsimp", "main": "lib.js"},
        "lib.js": "exports.sub = require('imponly/sub').sub + '!';\n",
    },
    # a chain: CommonJS -> import-only ES module -> CommonJS -> import-only ES module
    "outer": {
        "package.json": {"name": "outer"},
        "index.js": "exports.got = require('middle').got;\n",
    },
    "middle": {
        "package.json": {"name": "middle", "type": "module", "exports": {"import": "./m.js"}},
        "m.js": (
            "import inner from 'inner';\nimport { kind } from 'dual';\n"
            "export const got = [inner.v, kind];\n"
        ),
    },
    "inner": {
        "package.json": {"name": "inner"},
        "index.js": "exports.v = require('imponly').x;\n",
    },
    # a CommonJS package requiring an import-only package that uses top-level await
    "tlauser": {
        "package.json": {"name": "tlauser"},
        "index.js": "exports.v = require('tla').v;\n",
    },
}


@pytest.fixture(scope="module")
def ts(server) -> Iterator[tuple[Client, str]]:
    with server.client() as client:
        context_id = client.context("typescript")
        for package, files in PACKAGES.items():
            for name, content in files.items():
                body = json.dumps(content) if isinstance(content, dict) else content
                path = f"/contexts/{context_id}/files/node_modules/{package}/{name}"
                assert client.put(path, content=body.encode()).status_code == 200
        yield client, context_id
        client.delete(f"/contexts/{context_id}")


def value(ts: tuple[Client, str], code: str) -> object:
    """What the cell's body (an async function's) returns, passed through JSON."""
    client, context_id = ts
    cell = f"console.log(JSON.stringify(await (async () => {{ {code} }})()))"
    result = client.run(cell, context_id=context_id)
    assert result["error"] is None, result["error"]
    return json.loads(result["logs"]["stdout"][0])


def error(ts: tuple[Client, str], code: str) -> dict:
    client, context_id = ts
    result = client.run(code, context_id=context_id)
    assert result["error"] is not None, result
    return result["error"]


def test_require_of_an_import_only_package_and_subpath(ts):
    code = 'const m = require("imponly"); return [m.default(), m.x, require("imponly/sub").sub]'
    assert value(ts, code) == ["hi", 42, "sub"]
    assert value(ts, 'return require.resolve("imponly")').endswith("/node_modules/imponly/index.js")


def test_import_forms_load_the_same_module_as_require(ts):
    client, context_id = ts
    result = client.run('import hi, { x } from "imponly"\nhi() + x', context_id=context_id)
    assert result["items"][0]["text"] == "'hi42'", result
    code = (
        'const m = await import("imponly"); return [m.default === require("imponly").default, m.x]'
    )
    assert value(ts, code) == [True, 42]


def test_top_level_await_is_a_clear_require_error_and_import_works(ts):
    err = error(ts, 'require("tla")')
    assert "top-level await" in err["value"] and "await import('tla')" in err["value"], err
    assert value(ts, 'return (await import("tla")).v') == 7


def test_a_commonjs_package_requires_an_import_only_package(ts):
    got = value(ts, 'const p = require("cjsreq"); return [p.v, p.sub, p.dual, p.file]')
    assert got[:3] == ["hi42", "sub", "cjs"]
    assert got[3].endswith("/node_modules/imponly/index.js")


def test_a_commonjs_package_importing_one_works_with_import(ts):
    client, context_id = ts
    result = client.run('import { sub } from "cjsimp"\nsub', context_id=context_id)
    assert result["error"] is None, result["error"]
    assert result["items"][0]["text"] == "'sub!'", result
    assert value(ts, 'return (await import("cjsimp")).sub') == "sub!"


def test_a_chain_of_commonjs_and_import_only_packages_loads(ts):
    # the ES module in the middle imports the dual package's ES side, as before
    assert value(ts, 'return require("outer").got') == [42, "esm"]
    assert value(ts, 'return (await import("outer")).got') == [42, "esm"]


def test_top_level_await_below_a_commonjs_package_keeps_nodes_error(ts):
    # import("tlauser") would fail the same way, so the error does not suggest it
    err = error(ts, 'require("tlauser")')
    assert "ERR_REQUIRE_ASYNC_MODULE" in err["traceback"], err
    assert "top-level await" in err["value"], err
    assert "/node_modules/tla/index.js" in err["value"], err
    assert "import('tlauser')" not in err["value"], err


def test_ordinary_packages_and_missing_subpaths_are_unchanged(ts):
    assert value(ts, 'return require("dual").kind') == "cjs"
    err = error(ts, 'require("imponly/nope")')
    assert "ERR_PACKAGE_PATH_NOT_EXPORTED" in err["traceback"] and "./nope" in err["value"], err
    assert "Cannot find module 'nosuch'" in error(ts, 'require("nosuch")')["value"]


@pytest.mark.slow
def test_npm_installed_import_only_package_works_with_require(server):
    # locate-character 3: "exports": {"types": ..., "import": ...}, no dependencies
    with server.client() as client:
        client.timeout = 200
        context_id = client.context("typescript")
        install = (
            'require("node:child_process").execSync('
            '"npm install --no-audit --no-fund locate-character@3", {stdio: "pipe"}); 1'
        )
        result = client.run(install, context_id=context_id, timeout_ms=180_000)
        assert result["error"] is None, result["error"]
        code = 'console.log(JSON.stringify(require("locate-character").locate("ab\\ncd", "d")))'
        result = client.run(code, context_id=context_id)
        assert result["error"] is None, result["error"]
        assert json.loads(result["logs"]["stdout"][0]) == {
            "line": 1,
            "column": 1,
            "character": 4,
        }
        client.delete(f"/contexts/{context_id}")
