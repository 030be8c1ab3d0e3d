// cellbox TypeScript/JavaScript worker.
//
// Launch:  node [--max-old-space-size=N] main.mjs --fd N
// where N is an inherited, connected UNIX stream socket. Frames: 4-byte big-endian
// length + UTF-8 JSON; see cellbox/protocol.py for the message set (execute, chdir,
// interrupt -> ready, stdout, stderr, display, result, error, done, chdir).
//
// Design (why it looks like this):
//
// * Evaluation goes through the V8 inspector, in process: `Runtime.evaluate` with
//   `replMode: true, awaitPromise: true` on a Session connected to the main thread.
//   REPL mode is what DevTools consoles use: top-level let/const/class persist across
//   evaluations AND may be declared again later, top-level `await` works and the
//   completion value after an await is still returned. The alternative, `node:vm` plus a
//   rewrite of declarations into assignments, needs a real JS parser (none is exposed
//   by Node) to hoist let/const/class/function correctly and to wrap top-level await,
//   and `vm`'s own timeout only covers the synchronous part of a cell. Measured here:
//   `Runtime.evaluate` of `1+1` costs ~0.1-0.2 ms. Its `timeout` parameter is never used
//   (it crashed V8 in our tests).
// * State lives in the one main V8 context of this process; nothing is ever re-run.
// * An "io" worker thread owns the socket: it reads frames (also while the main thread
//   is stuck in user code), forwards them with postMessage, and writes the frames that
//   the main thread posts to it. Because only the io thread touches the socket, a
//   frame is always written whole even if user code on the main thread is terminated
//   in the middle of printing. The main thread applies backpressure with Atomics when
//   more than OUT_LIMIT characters are waiting to be written.
// * Interrupt: the io thread sets a shared flag and posts `interrupt` to the main
//   thread. If the main thread is idle (the cell is pending on an await), it finishes
//   the execution at once with `Interrupted`. If it is busy running JS (checked via
//   /proc/self/task/<pid>/stat, 'R'), the io thread calls `Runtime.terminateExecution`
//   through its own inspector session (connectToMainThread), which stops even
//   `for(;;){try{while(true){}}catch{}}` and keeps the context and its state. The
//   terminate is only sent while the main thread is running (a terminate sent while
//   it is idle would kill whatever JS runs next), and the interrupt message is re-sent
//   until the execution is over, so a lost message cannot wedge the worker.
// * TypeScript: `module.stripTypeScriptTypes` in "strip" mode (positions preserved, so
//   traceback lines/columns match the user's code); when the code uses syntax that
//   needs code generation (enum, namespace, parameter properties, `<T>x`), "transform"
//   mode. Code without any character or keyword that TypeScript-only syntax needs
//   (`1+1`, `f(x)`) skips the transform (~0.1 ms). Then a small tokenizer rewrites what a REPL script cannot contain: static
//   `import` declarations become `const ... = await import(...)`, `export` keywords are
//   dropped, and `import(...)` is routed through a helper (code evaluated through the
//   inspector has no module referrer, so Node's own dynamic import would fail).
//   The same tokenizer finds the cell's last statement: a result is reported only
//   when that statement is an expression (V8's completion value of `1; let x = 2` or of
//   `for (...) { x }` would otherwise leak out).
// * Results: the completion value is fetched with `Runtime.callFunctionOn` (so we hold
//   the real object, not a remote mirror) and rendered with util.inspect (no colours).
//   A native Promise as the last value is awaited, so `Promise.reject(e)` and
//   `import('node:os').then(...)` behave like their awaited forms.
// * Output: console.* and process.stdout/stderr.write are captured into one ordered
//   queue. It is sent at once when nothing was sent for 50 ms (so a lone print is
//   streamed immediately), else on setImmediate, when >= 64 KiB is queued, and before
//   `done`. Output produced while no execution runs
//   (timers, background errors) is held (capped at 1 MiB) and sent with the next one.
// * process.exit() is allowed: queued output is flushed and the process exits; the
//   server sees a dead worker (its crash path).
// * Non-Error thrown values: name "Error", value util.inspect(value).
//   Compile errors (V8 or the TypeScript transform): name "SyntaxError".
//   Interrupted executions: name "Interrupted".
//
// Known limits:
// * Code blocked inside a system call (child_process.execSync, a read on a pipe) can
//   only be terminated once the call returns; the server kills the worker after its
//   grace period.
// * Terminating JS that runs inside an async scope pushed by Node's own JavaScript
//   aborts the process. setTimeout/setInterval/setImmediate callbacks are moved out of
//   that scope (see runOutsideScope); code run through AsyncResource.runInAsyncScope
//   is not, and interrupting it while it spins ends the context (the server restarts).
// * A cell interrupted while it awaits keeps its continuation: if the awaited promise
//   settles later, the rest of the cell runs then, in the background.
// * Output written straight to fd 1/2 (fs.writeSync(1), child processes with
//   stdio 'inherit') bypasses the capture.

// Modules: main.mjs (this: startup, the protocol, executions) · io_thread.mjs · output.mjs
// (the ordered outgoing queue) · console.mjs (capture) · inspector.mjs (evaluation) ·
// tokenizer.mjs (statements, import rewrite) · typescript.mjs · render.mjs (values,
// errors, bundles) · globals.mjs (display, require, import, timers) · esm_hooks.mjs.

import util from 'node:util';

import { installConsole } from './console.mjs';
import { installGlobals } from './globals.mjs';
import { connect, disconnect, releaseGroup, remoteValue, replEvaluate } from './inspector.mjs';
import {
  INTERRUPT,
  S,
  beginExecution,
  emitText,
  endExecution,
  flushAtExit,
  postFrames,
  push,
  startIo,
} from './output.mjs';
import { errorFields, isErrorLike, mimeBundle, plain, safeInspect } from './render.mjs';
import {
  isNonExpressionStatement,
  matchingClose,
  rewrite,
  statementHeads,
  tokenize,
} from './tokenizer.mjs';
import { syntaxErrorFromTs, toJavaScript, warmUpTypeScript } from './typescript.mjs';

const fdArg = process.argv.indexOf('--fd');
const FD = fdArg >= 0 ? Number(process.argv[fdArg + 1]) : NaN;
if (!Number.isInteger(FD) || FD < 0) {
  process.stderr.write('usage: node main.mjs --fd N\n');
  process.exit(2);
}

let current = null; // the running execution
const waiting = []; // executions received while one runs (not expected by protocol)

// First, so the io thread boots while the main thread warms up.
startIo(FD, onMessage);

// ---------------------------------------------------------------------------------
// executions

let cellCount = 0;

function applyEnv(ex, env) {
  for (const key of Object.keys(env)) {
    if (!ex.envBackup.has(key)) {
      const had = Object.prototype.hasOwnProperty.call(process.env, key);
      ex.envBackup.set(key, had ? process.env[key] : undefined);
    }
    process.env[key] = String(env[key]);
  }
}

function restoreEnv(ex) {
  for (const [key, value] of ex.envBackup) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  ex.envBackup.clear();
}

function startExecution(msg) {
  const ex = {
    id: msg.id,
    cell: ++cellCount,
    envBackup: new Map(),
    finished: false,
    source: '',
    group: `cell-${msg.id}`,
  };
  current = ex;
  beginExecution();
  if (msg.interrupted) {
    finish(ex.id, { kind: 'interrupted' });
    return;
  }
  try {
    applyEnv(ex, msg.env);
  } catch (err) {
    finish(ex.id, { kind: 'error', error: errorFields(err) });
    return;
  }
  const cellName = `cell-${ex.cell}`;
  let js;
  try {
    const out = toJavaScript(msg.code);
    js = out.js;
    ex.transformed = out.transformed;
  } catch (err) {
    finish(ex.id, { kind: 'error', error: syntaxErrorFromTs(err, cellName) });
    return;
  }
  ex.source = js;
  let toks = null;
  if (js.includes('import') || js.includes('export')) {
    toks = tokenize(js);
    js = rewrite(js, toks);
  }
  ex.toks = toks;
  evaluate(ex, js);
}

function evaluate(ex, js) {
  ex.evaluated = js;
  replEvaluate(`${js}\n//# sourceURL=cell-${ex.cell}`, ex.group, (err, res, sync) =>
    onEvaluated(ex, err, res, sync),
  );
}

function lastStatementIsExpression(ex) {
  try {
    const toks = ex.toks || tokenize(ex.source);
    const heads = statementHeads(toks);
    if (ex.transformed) {
      // The enum/namespace transform appends `var Name;` after the user's code.
      let stop = toks.length;
      while (heads.length > 1) {
        const h = heads[heads.length - 1];
        const size = stop - h;
        const trailingVar =
          (size === 2 || (size === 3 && toks[h + 2].v === ';')) &&
          toks[h].v === 'var' &&
          toks[h + 1].k === 'n';
        if (!trailingVar) break;
        heads.pop();
        stop = h;
      }
    }
    if (heads.length === 0) return true;
    return !isNonExpressionStatement(toks, heads[heads.length - 1]);
  } catch {
    return true;
  }
}

// V8's REPL mode lets a later cell declare a name again only with the same kind
// (let/class, const, var/function). When a cell fails to compile because a top-level
// name was declared before with another kind, retry with the declaration keyword
// changed: `const x` after `let x` becomes `let x`, `let x` after `var`/`function x`
// becomes `var x`, `class C {}` becomes `let|var|const C = class C {};` and so on.
// Only compile errors are retried, so no code has run. Returns the next code or null.
function redeclaration(ex, message) {
  const m = /^Identifier '([^']+)' has already been declared$/.exec(message);
  if (!m || (ex.retries = (ex.retries ?? 0) + 1) > 16) return null;
  if (ex.retryName !== m[1] || !ex.candidates) {
    ex.retryName = m[1];
    ex.candidates = redeclarationCandidates(ex.evaluated, m[1]);
  }
  return ex.candidates.length ? ex.candidates.shift() : null;
}

function redeclarationCandidates(code, name) {
  const toks = tokenize(code);
  let found = null;
  for (const hi of statementHeads(toks)) {
    const t = toks[hi];
    const nx = toks[hi + 1];
    if (t.k === 'n' && nx && nx.k === 'n' && nx.v === name) {
      if (found !== null) return []; // declared twice in this cell: a real error
      found = hi;
    }
  }
  if (found === null) return [];
  const t = toks[found];
  const swap = (kw) => code.slice(0, t.s) + kw + code.slice(t.e);
  if (t.v === 'const') return [swap('let'), swap('var')];
  if (t.v === 'let') return [swap('var'), swap('const')];
  if (t.v === 'var') return [swap('let'), swap('const')];
  if (t.v === 'class' || t.v === 'function') {
    // `class C ... { }` -> `let C = class C ... { };`
    let j = found + 2;
    if (t.v === 'function') {
      if (toks[j] && toks[j].v === '(') j = matchingClose(toks, j) + 1;
      else return [];
    } else {
      while (j < toks.length && !(toks[j].v === '{' && toks[j].d === 0)) j++;
    }
    if (j <= 0 || j >= toks.length || toks[j].v !== '{') return [];
    const close = matchingClose(toks, j);
    if (close < 0) return [];
    const wrap = (kw) =>
      `${code.slice(0, t.s)}${kw} ${name} = ${code.slice(t.s, toks[close].e)};${code.slice(toks[close].e)}`;
    return t.v === 'class' ? [wrap('var'), wrap('let'), wrap('const')] : [wrap('let'), wrap('const')];
  }
  return [];
}

function syntaxErrorFromDetails(ex, details, thrown) {
  const fields = errorFields(thrown);
  const lines = ex.evaluated.split('\n');
  let line = details.lineNumber ?? 0;
  let column = details.columnNumber ?? 0;
  if (line >= lines.length) {
    // "Unexpected end of input" points into the appended sourceURL comment.
    line = lines.length - 1;
    column = lines[line].length;
  }
  const sourceLine = lines[line];
  let where = `cell-${ex.cell}:${line + 1}`;
  if (sourceLine !== undefined) where += `\n${sourceLine}\n${' '.repeat(column)}^`;
  fields.traceback = plain(`${where}\n\n${fields.name}: ${fields.value}`);
  return fields;
}

function onEvaluated(ex, err, res, sync) {
  if (ex !== current || ex.finished) {
    releaseGroup(ex.group);
    return;
  }
  if (err || !res) {
    if (Atomics.load(S, INTERRUPT) === ex.id) finish(ex.id, { kind: 'interrupted' });
    else {
      const value = plain(err ? err.message : 'no result');
      finish(ex.id, {
        kind: 'error',
        error: { name: 'InternalError', value, traceback: `InternalError: ${value}` },
      });
    }
    return;
  }
  try {
    if (res.exceptionDetails) {
      const details = res.exceptionDetails;
      const thrown = details.exception ? remoteValue(details.exception) : undefined;
      let error;
      if (details.exception === undefined) {
        error = { name: 'Error', value: plain(details.text), traceback: plain(details.text) };
      } else if (sync && thrown instanceof SyntaxError) {
        // A compile error (answered before anything ran).
        const retry = redeclaration(ex, thrown.message);
        if (retry !== null) {
          ex.firstError ??= syntaxErrorFromDetails(ex, details, thrown);
          evaluate(ex, retry);
          return;
        }
        error = ex.firstError ?? syntaxErrorFromDetails(ex, details, thrown);
      } else {
        error = errorFields(thrown);
      }
      finish(ex.id, { kind: 'error', error });
      return;
    }
    const value = remoteValue(res.result);
    if (util.types.isPromise(value)) {
      value.then(
        (settled) => finish(ex.id, { kind: 'value', value: settled }),
        (reason) => finish(ex.id, { kind: 'error', error: errorFields(reason) }),
      );
      return;
    }
    finish(ex.id, { kind: 'value', value });
  } catch (failure) {
    finish(ex.id, { kind: 'error', error: errorFields(failure) });
  }
}

let lastDoneId = 0;

const INTERRUPTED = {
  type: 'error',
  name: 'Interrupted',
  value: 'Execution interrupted',
  traceback: 'Interrupted: Execution interrupted',
};

function finish(id, outcome) {
  const ex = current;
  if (!ex || ex.id !== id || ex.finished) return;
  ex.finished = true;
  try {
    restoreEnv(ex);
    if (outcome.kind === 'value') {
      if (outcome.value !== undefined && lastStatementIsExpression(ex)) {
        push({ type: 'result', bundle: { 'text/plain': safeInspect(outcome.value) } });
      }
    } else if (outcome.kind === 'interrupted') {
      push(INTERRUPTED);
    } else {
      push({ type: 'error', ...outcome.error });
    }
  } catch (failure) {
    push({ type: 'error', ...errorFields(failure) });
  } finally {
    push({ type: 'done' });
    current = null;
    lastDoneId = id;
    endExecution(id);
    releaseGroup(ex.group);
  }
  if (waiting.length) setImmediate(startNext);
}

function startNext() {
  if (current || waiting.length === 0) return;
  startExecution(waiting.shift());
}

function onInterrupt(id) {
  if (id <= lastDoneId) return;
  if (current && current.id === id && !current.finished) {
    finish(id, { kind: 'interrupted' });
    return;
  }
  const queued = waiting.find((msg) => msg.id === id);
  if (queued) {
    queued.interrupted = true;
    return;
  }
  // A termination cut short the handler that started or finished this execution
  // (it landed in the worker's own code): end it here, or it would never be done.
  current = null;
  push(INTERRUPTED, { type: 'done' });
  lastDoneId = id;
  endExecution(id);
  if (waiting.length) setImmediate(startNext);
}

// `chdir` (sent between executions): answered at once, ahead of any held output,
// because the server reads the answer as the next frame.
function changeDirectory(target) {
  let reply;
  try {
    if (typeof target !== 'string') throw new TypeError("chdir: 'path' must be a string");
    process.chdir(target);
    reply = { type: 'chdir', ok: true, error: '' };
  } catch (err) {
    reply = { type: 'chdir', ok: false, error: `cannot change directory: ${plain(err.message)}` };
  }
  postFrames([reply], 0);
}

// ---------------------------------------------------------------------------------
// background errors, exit

function backgroundError(prefix, err) {
  const fields = errorFields(err);
  const text = isErrorLike(err) ? fields.traceback : `${fields.value}`;
  emitText('stderr', `${prefix} ${text}\n`);
}
process.on('uncaughtException', (err) => backgroundError('Uncaught', err));
process.on('unhandledRejection', (reason) => backgroundError('Uncaught (in promise)', reason));

process.on('exit', () => {
  // process.exit() from user code (or EOF): push out what was printed.
  disconnect();
  try {
    flushAtExit();
  } catch {
    // exiting anyway
  }
});

// ---------------------------------------------------------------------------------
// startup (the io thread is already running): capture, globals, inspector, warm-up, ready

installConsole();
installGlobals();
connect();
{
  warmUpTypeScript();
  // Run the rest of an execution's path once, so the first cell is not the one that
  // compiles it.
  const sample = 'import { a } from "m"\nexport const b = 1; for (;;) {}\nimport("x"); 1';
  const toks = tokenize(sample);
  rewrite(sample, toks);
  isNonExpressionStatement(toks, statementHeads(toks).at(-1));
  errorFields(new Error('warm-up'));
  JSON.stringify({ type: 'result', bundle: mimeBundle({ a: [1] }) });
}

function onMessage(msg) {
  if (msg.op === 'execute') {
    if (current) waiting.push(msg);
    else startExecution(msg);
  } else if (msg.op === 'interrupt') {
    onInterrupt(msg.id);
  } else if (msg.op === 'chdir') {
    changeDirectory(msg.path);
  } else if (msg.op === 'eof') {
    process.exit(0);
  }
}

replEvaluate('({ warm: [1, "up"] })', 'warm-up', (err, res) => {
  try {
    if (!err && res && res.result) safeInspect(remoteValue(res.result));
  } catch {
    // only a warm-up
  }
  releaseGroup('warm-up');
  postFrames([{ type: 'ready' }], 0);
});
