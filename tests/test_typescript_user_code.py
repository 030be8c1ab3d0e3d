"""TypeScript contexts as their user meets them: positions in cells whose TypeScript needs
generated code (enum, namespace, parameter properties), in cells and in imported .ts
files, named imports of CommonJS modules,
the output of child processes given the worker's stdout/stderr, output written to fds 1
and 2 through fs, interrupting a cell that waits for a child process, decorators,
import.meta, top-level using, the errors of an AggregateError, streams piped into stdout."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import STARTED, Client


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


LOADS = {
    "import": "import { made, fail } from './lib.ts'",
    "require": "const { made, fail } = require('./lib.ts')",
    "dynamic import": "const { made, fail } = await import('./lib.ts')",
    "require of CommonJS": "const { made, fail } = require('./lib.ts')",
}


@pytest.mark.parametrize("how", LOADS.keys())
def test_an_imported_ts_file_may_hold_code_that_needs_generating(
    client: Client, ts: str, how: str
) -> None:
    # As in a cell: an enum, a namespace and parameter properties in a .ts file the cell
    # imports (an ES module, or CommonJS), its frames at the file's own lines.
    commonjs = how == "require of CommonJS"
    module = "\n".join(
        [
            *GENERATING.values(),
            "const made = [Kind.B, Space.v, new Point(1).y]",
            "function fail(): never {\n  throw new Error('in lib')\n}",
            "module.exports = { made, fail }" if commonjs else "export { made, fail }",
            "",
        ]
    )
    client.run(f"require('fs').writeFileSync('lib.ts', {json.dumps(module)})", context_id=ts)
    body = client.run(f"{LOADS[how]}\nmade", context_id=ts)
    assert body["error"] is None, body
    assert body["items"][0]["text"] == "[ 1, 1, 2 ]"
    assert body["logs"] == {"stdout": [], "stderr": []}
    fail_line = module.count("\n", 0, module.index("throw")) + 1
    traceback = client.run("fail()", context_id=ts)["error"]["traceback"]
    assert f"lib.ts:{fail_line}:9)" in traceback.splitlines()[1], traceback


def test_an_imported_ts_file_that_does_not_compile_is_named_in_the_error(
    client: Client, ts: str
) -> None:
    client.run("require('fs').writeFileSync('bad.ts', 'const x: number = ;\\n')", context_id=ts)
    for load in ("require('./bad.ts')", "await import('./bad.ts')"):
        error = client.run(load, context_id=ts)["error"]
        assert error["name"] == "SyntaxError", error
        assert error["traceback"].splitlines()[0].endswith("bad.ts:1"), error


def test_named_imports_of_a_commonjs_module_are_its_exports_objects_properties(
    client: Client, ts: str
) -> None:
    # lodash's shape: one function object whose properties are the API; Node's static
    # analysis of CommonJS finds no named export in it
    library = json.dumps(
        "function lib() {}\nlib.chunk = (a, n) => [a.slice(0, n), a.slice(n)];\n"
        "lib.VERSION = '4';\nmodule.exports = lib;\n"
    )
    setup = client.run(
        "const fs = require('fs');\n"
        f"fs.writeFileSync('lib.cjs', {library});\n"
        "fs.mkdirSync('node_modules/shaped', { recursive: true });\n"
        "fs.writeFileSync('node_modules/shaped/package.json', '{\"name\": \"shaped\"}');\n"
        f"fs.writeFileSync('node_modules/shaped/index.js', {library});",
        context_id=ts,
    )
    assert setup["error"] is None, setup
    body = client.run(
        "import { chunk, VERSION } from './lib.cjs'\n"
        "import shaped, { chunk as split, missing } from 'shaped'\n"
        "[chunk([1, 2, 3], 1), VERSION, split === shaped.chunk, missing]",
        context_id=ts,
    )
    assert body["error"] is None, body
    assert body["items"] == [
        {"is_primary": True, "text": "[ [ [ 1 ], [ 2, 3 ] ], '4', true, undefined ]"}
    ]
    # ES modules and built-ins keep their own exports
    esm = client.run(
        "require('fs').writeFileSync('esm.mjs', 'export const a = 1; export default { b: 2 };');\n"
        "import { a, b } from './esm.mjs'\nimport { join } from 'node:path'\n[a, b, typeof join]",
        context_id=ts,
    )
    assert esm["items"] == [{"is_primary": True, "text": "[ 1, undefined, 'function' ]"}], esm


def test_child_processes_with_inherited_stdio_print_into_the_answer(
    client: Client, ts: str
) -> None:
    body = client.run(
        "import { execSync } from 'node:child_process'\n"
        "const cp = require('child_process')\n"
        "const shown = execSync('echo one; echo two >&2', { stdio: 'inherit' })\n"
        "cp.spawnSync('sh', ['-c', 'echo three'], { stdio: [0, 1, 2] })\n"
        "cp.execFileSync('sh', ['-c', 'echo four'], { stdio: ['ignore', process.stdout, 'pipe'] })\n"
        "const child = cp.spawn('sh', ['-c', 'echo five; echo six >&2'], { stdio: 'inherit' })\n"
        "await new Promise((done) => child.on('close', done))\n"
        "let failed; try { execSync('exit 3', { stdio: 'inherit' }) } catch (e) { failed = e }\n"
        "[shown, failed.message, failed.status]",
        context_id=ts,
    )
    assert body["error"] is None, body
    assert body["logs"] == {"stdout": ["one", "three", "four", "five"], "stderr": ["two", "six"]}
    assert body["items"] == [
        {"is_primary": True, "text": "[ null, 'Command failed: exit 3', 3 ]"}
    ], body


def test_typescript_import_equals_and_an_export_list_before_the_value(
    client: Client, ts: str
) -> None:
    body = client.run(
        "import fs = require('fs')\ntypeof fs.readFileSync",
        context_id=ts,
    )
    assert body["error"] is None, body
    assert body["items"] == [{"is_primary": True, "text": "'function'"}]
    exported = client.run("export {}\n'the value'", context_id=ts)
    assert exported["items"] == [{"is_primary": True, "text": "'the value'"}], exported


def test_an_interrupt_ends_the_child_process_the_cell_waits_for_and_keeps_the_state(
    client: Client, ts: str
) -> None:
    started = client.run(
        "const { spawn, execSync } = require('child_process')\n"
        "const server = spawn('sleep', ['60']); let kept = 1\n"
        "await new Promise((done) => setTimeout(done, 200))",
        context_id=ts,
    )
    assert started["error"] is None, started
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(
                client.run,
                STARTED["typescript"] + "execSync('sleep 60'); 'finished'",
                context_id=ts,
            )
            client.wait_started(ts)
            client.post(f"/contexts/{ts}/interrupt")
            body = running.result(timeout=30)
        assert body["error"]["name"] == "Interrupted", body
        assert "lost" not in body["error"]["value"], body
        timed_out = client.run("execSync('sleep 60')", context_id=ts, timeout_ms=500)
        assert timed_out["error"]["name"] == "TimeoutError", timed_out
        assert "lost" not in timed_out["error"]["value"], timed_out
        # the state is kept, and the child an earlier cell started still runs
        after = client.run("[kept, server.exitCode, server.signalCode]", context_id=ts)
        assert after["items"] == [{"is_primary": True, "text": "[ 1, null, null ]"}], after
    finally:
        client.run("server.kill()", context_id=ts)


FD_WRITES = """\
import { writeSync } from 'node:fs'
const fs = require('fs')
console.log('log 1'); fs.writeSync(1, 'fd 1\\n'); fs.writeSync(2, 'fd 2\\n'); console.log('log 2')
writeSync(process.stdout.fd, Buffer.from('-bytes-\\n'), 1, 5); fs.writeSync(1, '\\n')
fs.writeSync(1, new Uint8Array([0xe2, 0x82])); process.stdout.write(new Uint8Array([0xac, 10]))
fs.writevSync(1, [Buffer.from('v1 '), Buffer.from('v2\\n')])
fs.writeFileSync(1, 'file\\n'); fs.appendFileSync(process.stderr.fd, 'append\\n')
fs.writeFileSync('/dev/stdout', 'dev stdout\\n')
await new Promise((done) => fs.write(1, 'callback\\n', done))
await new Promise((done) => fs.write(1, Buffer.from('buffer callback\\n'), done))
await require('fs/promises').appendFile('/dev/stdout', 'promises\\n')
const stream = fs.createWriteStream(null, { fd: 1 })
stream.end('stream\\n'); await new Promise((done) => stream.on('close', done))
const named = fs.createWriteStream('/dev/stderr')
named.end('dev stderr\\n'); await new Promise((done) => named.on('close', done))
let bad; try { fs.writeSync(1, 42) } catch (e) { bad = e.code }
const kept = fs.openSync('kept.txt', 'w'); fs.writeSync(kept, 'in the file'); fs.closeSync(kept)
console.log('still', fs.readFileSync('kept.txt', 'utf8'))
setTimeout(() => { fs.writeSync(1, 'later\\n'); fs.writeSync(2, 'later 2\\n') }, 10)
await new Promise((done) => setTimeout(done, 50));
[fs.writeSync(1, 'é'), bad, kept > 2]
"""


def test_output_written_to_fds_1_and_2_is_the_answers_stdout_and_stderr(
    client: Client, ts: str
) -> None:
    # fs.writeSync(1) and its kin, /dev/stdout, a stream on fd 1 (closing it leaves fd 1 as
    # it was, so a file opened later does not take its number): in order with console.log
    body = client.run(FD_WRITES, context_id=ts)
    assert body["error"] is None, body
    assert body["logs"] == {
        "stdout": [
            "log 1", "fd 1", "log 2", "bytes", "\u20ac", "v1 v2", "file", "dev stdout",
            "callback", "buffer callback", "promises", "stream", "still in the file", "later",
            "\u00e9",
        ],
        "stderr": ["fd 2", "append", "dev stderr", "later 2"],
    }, body  # fmt: skip
    assert body["items"] == [{"is_primary": True, "text": "[ 2, 'ERR_INVALID_ARG_TYPE', true ]"}], (
        body
    )
    # streamed as events; a write after the cell ended comes with the next execution
    events = client.events(
        "setTimeout(() => require('fs').writeSync(1, 'after\\n'), 10)\n"
        "require('fs').writeSync(2, 'now\\n'); undefined",
        context_id=ts,
    )
    assert {"type": "stderr", "data": "now"} in events, events
    time.sleep(0.2)
    following = client.run("console.log('next')", context_id=ts)
    assert following["logs"]["stdout"] == ["after", "next"], following
    # and in worker_threads, whose fs is their own; a Worker's own execArgv is kept
    threads = client.run(
        "const { Worker } = require('node:worker_threads')\n"
        "const thread = new Worker(\"const fs = require('fs'); fs.writeSync(1, 'thread\\\\n');"
        " fs.writeSync(2, process.execArgv[0] + '\\\\n')\", { eval: true, execArgv: ['--no-warnings'] })\n"
        "await new Promise((done) => thread.on('exit', done))",
        context_id=ts,
    )
    assert threads["logs"] == {"stdout": ["thread"], "stderr": ["--no-warnings"]}, threads


@pytest.mark.parametrize(
    "code",
    [
        "function sealed(c: any) { return c }\n@sealed\nclass Account {}",
        "const log = (t: any, k: string) => {}\nclass Account {\n  @log balance = 0\n}",
        "enum Kind { A }\nclass Account {\n  @Reflect.metadata('k', 1) open(@inject x: number) {}\n}",
    ],
    ids=["class", "field", "generated-code"],
)
def test_a_decorator_is_told_unsupported(client: Client, ts: str, code: str) -> None:
    body = client.run(code, context_id=ts)
    error = body["error"]
    assert error["name"] == "SyntaxError", body
    assert error["value"].startswith("Decorators are not supported: "), body
    line = code.split("\n").index(next(x for x in code.split("\n") if "@" in x)) + 1
    assert error["traceback"].startswith(f"cell-1:{line}\n"), body
    # an @ that is no decorator keeps V8's own message
    other = client.run("const product = 2 @ 3", context_id=ts)
    assert not other["error"]["value"].startswith("Decorators"), other


def test_import_meta_is_that_of_a_module_in_the_working_directory(client: Client, ts: str) -> None:
    body = client.run(
        "import { fileURLToPath } from 'node:url'\n"
        "const here = require('path').dirname(fileURLToPath(import.meta.url))\n"
        "const later = () => import.meta;\n"
        "JSON.stringify([here === process.cwd(), import.meta.dirname === here,\n"
        " import.meta.filename === require('path').join(here, 'cell-1'),\n"
        " new URL('./data.csv', import.meta.url).href === import.meta.resolve('./data.csv'),\n"
        " import.meta.resolve('node:fs'), later() === import.meta, import.meta.main])",
        context_id=ts,
    )
    assert body["error"] is None, body
    assert body["items"] == [
        {"is_primary": True, "text": """'[true,true,true,true,"node:fs",true,true]'"""}
    ], body


def test_what_a_top_level_using_holds_is_disposed_when_the_cell_ends(
    client: Client, ts: str
) -> None:
    body = client.run(
        "enum Kind { File }\n"
        "const made = (name: string): Disposable & { name: string } =>\n"
        "  ({ name, [Symbol.dispose]() { console.log(`closed ${name}`) } })\n"
        "using a = made('a'), b = made('b')\n"
        "await using c = { async [Symbol.asyncDispose]() {\n"
        "  await new Promise((done) => setTimeout(done, 10)); console.log('closed c') } }\n"
        "console.log('body', a.name, b.name)\n"
        "Kind.File",
        context_id=ts,
    )
    assert body["error"] is None, body
    assert body["logs"]["stdout"] == ["body a b", "closed c", "closed b", "closed a"], body
    assert body["items"] == [{"is_primary": True, "text": "0"}], body
    # the names stay; a declaration alone has no value
    kept = client.run("using d = made('d')", context_id=ts)
    assert kept["items"] == [] and kept["logs"]["stdout"] == ["closed d"], kept
    assert client.run("a.name", context_id=ts)["items"][0]["text"] == "'a'"
    # a disposal that throws fails the cell; one that is no disposable fails the declaration
    failed = client.run(
        "using e = { [Symbol.dispose]() { throw new Error('cannot close') } }\n1", context_id=ts
    )
    assert failed["error"]["value"] == "cannot close", failed
    assert "(cell-4:1:" in failed["error"]["traceback"], failed
    refused = client.run("using f = 5", context_id=ts)
    assert refused["error"]["name"] == "TypeError", refused


def test_the_traceback_of_an_aggregate_error_tells_the_errors_it_holds(
    client: Client, ts: str
) -> None:
    body = client.run(
        "await Promise.any([\n  Promise.reject(new Error('first')),\n"
        "  Promise.reject(new TypeError('second', { cause: 'why' })),\n])",
        context_id=ts,
    )
    assert body["error"]["name"] == "AggregateError", body
    assert body["error"]["traceback"] == (
        "AggregateError: All promises were rejected\n\n"
        "Error 1 of 2: Error: first\n    at cell-1:2:18\n\n"
        "Error 2 of 2: TypeError: second\n    at cell-1:3:18"
    ), body
    many = client.run(
        "throw new AggregateError(Array.from({ length: 12 }, (_, i) => i), 'many')", context_id=ts
    )
    traceback = many["error"]["traceback"]
    assert "Error 10 of 12: 9\n\n… and 2 more errors" in traceback, many


def test_a_pipeline_into_stdout_ends_and_stdout_stays_open(client: Client, ts: str) -> None:
    body = client.run(
        "const { Readable } = require('node:stream')\n"
        "const { pipeline } = require('node:stream/promises')\n"
        "await pipeline(Readable.from(['a\\n', 'b\\n']), process.stdout)\n"
        "async function* broken() { yield 'c\\n'; throw new Error('source broke') }\n"
        "let failed; try { await pipeline(Readable.from(broken()), process.stderr) }\n"
        "catch (e) { failed = e.message }\n"
        "await pipeline(Readable.from(['d\\n']), process.stderr)\n"
        "process.stdout.end('e\\n'); console.log('f')\n"
        "failed",
        context_id=ts,
        timeout_ms=10_000,
    )
    assert body["error"] is None, body
    assert body["logs"] == {"stdout": ["a", "b", "e", "f"], "stderr": ["c", "d"]}, body
    assert body["items"] == [{"is_primary": True, "text": "'source broke'"}], body
    later = client.run("console.log('g'); process.stdout.writable", context_id=ts)
    assert later["logs"]["stdout"] == ["g"] and later["items"][0]["text"] == "true", later
