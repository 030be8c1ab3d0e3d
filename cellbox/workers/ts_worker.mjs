// cellbox TypeScript/JavaScript worker.
//
// Launch:  node [--max-old-space-size=N] ts_worker.mjs --fd N
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

import { Worker } from 'node:worker_threads';
import inspector from 'node:inspector';
import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createRequire, isBuiltin, stripTypeScriptTypes, syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import util from 'node:util';
import v8 from 'node:v8';

// ---------------------------------------------------------------------------------
// io thread (runs in a worker_threads Worker; CommonJS; must be self-contained)

function ioThread() {
  'use strict';
  const { parentPort, workerData } = require('node:worker_threads');
  const net = require('node:net');
  const fs = require('node:fs');
  const inspector = require('node:inspector');
  const S = new Int32Array(workerData.shared);
  const PENDING = 0;
  const INTERRUPT = 1;

  // Connected only while an interrupt is in progress: a session left connected makes
  // Node print "Waiting for the debugger to disconnect..." at exit.
  let session = null;
  function terminateMain() {
    if (session === null) {
      session = new inspector.Session();
      session.connectToMainThread();
    }
    session.post('Runtime.terminateExecution', () => {});
  }
  function dropSession() {
    if (session !== null) {
      session.disconnect();
      session = null;
    }
  }

  const sock = new net.Socket({ fd: workerData.fd, readable: true, writable: true });
  let eof = false;
  let seq = 0;
  const unfinished = [];
  let interrupting = 0;

  function release(bytes) {
    Atomics.sub(S, PENDING, bytes);
    Atomics.notify(S, PENDING);
  }

  function onEof() {
    if (eof) return;
    eof = true;
    dropSession();
    Atomics.store(S, PENDING, 0);
    Atomics.notify(S, PENDING);
    parentPort.postMessage({ op: 'eof' });
    // The server is gone. If the main thread cannot exit by itself (stuck in user
    // code), do not linger.
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 2000).unref();
  }
  sock.on('end', onEof);
  sock.on('close', onEof);
  sock.on('error', onEof);

  let chunks = [];
  let have = 0;
  sock.on('data', (buf) => {
    chunks.push(buf);
    have += buf.length;
    while (have >= 4) {
      if (chunks[0].length < 4) chunks = [Buffer.concat(chunks, have)];
      const len = chunks[0].readUInt32BE(0);
      if (have < 4 + len) return;
      const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, have);
      const payload = all.toString('utf8', 4, 4 + len);
      const rest = all.subarray(4 + len);
      chunks = rest.length ? [rest] : [];
      have = rest.length;
      let msg;
      try {
        msg = JSON.parse(payload);
      } catch {
        continue;
      }
      onFrame(msg);
    }
  });

  function onFrame(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.op === 'execute') {
      const id = ++seq;
      unfinished.push(id);
      const env = msg.env && typeof msg.env === 'object' ? msg.env : {};
      const code = typeof msg.code === 'string' ? msg.code : '';
      parentPort.postMessage({ op: 'execute', id, code, env });
    } else if (msg.op === 'interrupt') {
      if (unfinished.length) interrupt(unfinished[0]);
    } else if (msg.op === 'chdir') {
      parentPort.postMessage({ op: 'chdir', path: msg.path });
    }
  }

  function mainThreadState() {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'latin1');
      return stat.charAt(stat.lastIndexOf(')') + 2);
    } catch {
      return '?';
    }
  }

  function interrupt(id) {
    Atomics.store(S, INTERRUPT, id);
    parentPort.postMessage({ op: 'interrupt', id });
    if (interrupting === id) return;
    interrupting = id;
    const started = Date.now();
    let lastTerminate = 0;
    let lastPost = started;
    const tick = () => {
      if (!unfinished.includes(id) || eof) {
        if (interrupting === id) {
          interrupting = 0;
          dropSession();
        }
        return;
      }
      const now = Date.now();
      const state = mainThreadState();
      // 'R': the main thread is running (user JS). Anything else for a whole second
      // while not answering: blocked inside user code (sync sleep, Atomics.wait...).
      if ((state === 'R' || state === '?' || now - started > 1000) && now - lastTerminate >= 200) {
        lastTerminate = now;
        terminateMain();
      }
      if (now - lastPost >= 250) {
        lastPost = now;
        parentPort.postMessage({ op: 'interrupt', id });
      }
      setTimeout(tick, 20);
    };
    setTimeout(tick, 20);
  }

  parentPort.on('message', (m) => {
    if (m.frames.length) {
      if (eof) {
        release(m.bytes);
      } else {
        const parts = [];
        for (const text of m.frames) {
          const body = Buffer.from(text, 'utf8');
          const head = Buffer.allocUnsafe(4);
          head.writeUInt32BE(body.length, 0);
          parts.push(head, body);
        }
        sock.write(Buffer.concat(parts), () => release(m.bytes));
      }
    }
    if (m.finished) {
      const at = unfinished.indexOf(m.finished);
      if (at >= 0) unfinished.splice(at, 1);
      if (interrupting === m.finished) {
        interrupting = 0;
        dropSession();
      }
    }
  });
}

// ---------------------------------------------------------------------------------
// main thread: startup

const fdArg = process.argv.indexOf('--fd');
const FD = fdArg >= 0 ? Number(process.argv[fdArg + 1]) : NaN;
if (!Number.isInteger(FD) || FD < 0) {
  process.stderr.write('usage: node ts_worker.mjs --fd N\n');
  process.exit(2);
}

const shared = new SharedArrayBuffer(8);
const S = new Int32Array(shared);
const PENDING = 0;
const INTERRUPT = 1;
const OUT_LIMIT = 1 << 20; // characters posted to the io thread but not yet written
const FLUSH_CHARS = 64 * 1024;
const FLUSH_AGE_MS = 50;
const IDLE_CAP = 1 << 20;

const io = new Worker(`(${ioThread})()`, {
  eval: true,
  workerData: { fd: FD, shared },
  name: 'cellbox-io',
});
io.on('error', (err) => {
  // Without the io thread nothing can reach the server: die loudly on the real stderr.
  realStderrWrite(`cellbox worker: io thread failed: ${err && err.stack}\n`);
  process.exit(70);
});
io.on('exit', (code) => {
  if (!exiting) process.exit(code || 70);
});

const WORKER_FILE = fileURLToPath(import.meta.url);
const realStderr = process.stderr;
function realStderrWrite(text) {
  try {
    realStderr.write(text);
  } catch {
    // nothing left to report to
  }
}

// ---------------------------------------------------------------------------------
// outgoing frames

let queue = []; // frames, in order; stdout/stderr chunks of the same stream coalesced
let queuedChars = 0;
let lastFlushAt = 0;
let flushScheduled = false;
let idleDropped = 0;
let exiting = false;
let current = null; // the running execution
const waiting = []; // executions received while one runs (not expected by protocol)

function postFrames(frames, finished) {
  let bytes = 0;
  const texts = new Array(frames.length);
  for (let i = 0; i < frames.length; i++) {
    texts[i] = JSON.stringify(frames[i]);
    bytes += texts[i].length;
  }
  Atomics.add(S, PENDING, bytes);
  io.postMessage({ frames: texts, bytes, finished });
  // Backpressure: a program printing in a tight loop waits for the socket here.
  let pending = Atomics.load(S, PENDING);
  while (pending > OUT_LIMIT && !exiting) {
    Atomics.wait(S, PENDING, pending, 100);
    pending = Atomics.load(S, PENDING);
  }
}

function flush(finished = 0) {
  flushScheduled = false;
  if (queue.length === 0 && !finished) return;
  lastFlushAt = performance.now();
  const frames = queue;
  queue = [];
  queuedChars = 0;
  postFrames(frames, finished);
}

function scheduledFlush() {
  if (flushScheduled && current) flush();
  flushScheduled = false;
}

const resolved = Promise.resolve();
function deferredFlush() {
  // Run as a microtask, outside the immediate's async scope (see runOutsideScope).
  resolved.then(scheduledFlush);
}

function enqueue(frame, size) {
  if (!current) {
    // Idle: hold it for the next execution, bounded.
    if (queuedChars + size > IDLE_CAP) {
      idleDropped += size;
      return;
    }
  }
  queue.push(frame);
  queuedChars += size;
  afterEnqueue();
}

function afterEnqueue() {
  if (!current) return;
  if (queuedChars >= FLUSH_CHARS || performance.now() - lastFlushAt > FLUSH_AGE_MS) {
    flush();
  } else if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(deferredFlush);
  }
}

function emitText(type, text) {
  if (!text) return;
  text = text.toWellFormed();
  const last = queue[queue.length - 1];
  if (!current && queuedChars + text.length > IDLE_CAP) {
    idleDropped += text.length;
    return;
  }
  if (last !== undefined && last.type === type && last.text.length < FLUSH_CHARS) {
    last.text += text;
    queuedChars += text.length;
    afterEnqueue();
  } else {
    enqueue({ type, text }, text.length);
  }
}

// ---------------------------------------------------------------------------------
// capture of console and process.stdout / process.stderr

class CaptureStream extends Writable {
  constructor(type, fd) {
    super({ decodeStrings: false });
    this.type = type;
    this.fd = fd;
    this.isTTY = false;
    this.decoder = new StringDecoder('utf8');
  }
  _text(chunk, encoding) {
    if (typeof chunk === 'string') {
      if (encoding && encoding !== 'utf8' && encoding !== 'utf-8' && Buffer.isEncoding(encoding)) {
        return this.decoder.write(Buffer.from(chunk, encoding));
      }
      return chunk;
    }
    if (chunk instanceof Uint8Array) {
      return this.decoder.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    return String(chunk);
  }
  write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    emitText(this.type, this._text(chunk, encoding));
    if (typeof cb === 'function') process.nextTick(cb, null);
    return true;
  }
  _write(chunk, encoding, cb) {
    emitText(this.type, this._text(chunk, encoding));
    cb();
  }
  end(chunk, encoding, cb) {
    if (typeof chunk === 'function') {
      cb = chunk;
      chunk = undefined;
    } else if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    if (chunk !== undefined && chunk !== null) this.write(chunk, encoding);
    if (typeof cb === 'function') process.nextTick(cb);
    return this;
  }
  hasColors() {
    return false;
  }
  getColorDepth() {
    return 1;
  }
  getWindowSize() {
    return [80, 24];
  }
}

const capturedStdout = new CaptureStream('stdout', 1);
const capturedStderr = new CaptureStream('stderr', 2);
Object.defineProperty(process, 'stdout', {
  configurable: true,
  enumerable: true,
  get: () => capturedStdout,
});
Object.defineProperty(process, 'stderr', {
  configurable: true,
  enumerable: true,
  get: () => capturedStderr,
});
globalThis.console = new Console({
  stdout: capturedStdout,
  stderr: capturedStderr,
  colorMode: false,
  // The capture streams never fail. With the default (true) every call passes a
  // completion callback, queued with process.nextTick: a synchronous print loop would
  // pile those up without bound.
  ignoreErrors: false,
});

// ---------------------------------------------------------------------------------
// values, errors, display

const inspectOptions = { colors: false };
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)/g;

function plain(text) {
  return String(text).replace(ANSI, '').toWellFormed();
}

function safeInspect(value) {
  try {
    return plain(util.inspect(value, inspectOptions));
  } catch (err) {
    let why = 'unknown error';
    try {
      why = String(err && err.message);
    } catch {
      // keep the generic reason
    }
    return `[value could not be inspected: ${plain(why)}]`;
  }
}

function isErrorLike(value) {
  if (value instanceof Error || util.types.isNativeError(value)) return true;
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.message === 'string' &&
    typeof value.stack === 'string'
  );
}

const FRAME = /^\s+at /;

function cleanStack(stack) {
  const lines = String(stack).split('\n');
  const out = [];
  for (const line of lines) {
    if (FRAME.test(line)) {
      // Frames below the cell (the inspector call into it) and the worker's own.
      if (line.includes('(node:inspector:') || line.includes('at Session.post ')) break;
      if (line.includes(WORKER_FILE) || line.includes(import.meta.url)) continue;
    }
    out.push(line);
  }
  while (out.length && out[out.length - 1].trim() === '') out.pop();
  return plain(out.join('\n'));
}

// The `cause` chain of an error, as text to append to its traceback.
function causes(err) {
  let text = '';
  const seen = new Set([err]);
  try {
    let cause = err.cause;
    while (cause !== undefined && !seen.has(cause) && seen.size <= 5) {
      seen.add(cause);
      const shown =
        isErrorLike(cause) && typeof cause.stack === 'string'
          ? cleanStack(cause.stack)
          : safeInspect(cause);
      text += `\n\nCaused by: ${shown}`;
      cause = isErrorLike(cause) ? cause.cause : undefined;
    }
  } catch {
    // an exotic cause: what we have is enough
  }
  return text;
}

function errorFields(thrown) {
  if (isErrorLike(thrown)) {
    let name = 'Error';
    let value = '';
    let traceback = '';
    try {
      if (typeof thrown.name === 'string' && thrown.name) name = thrown.name;
      const ctor = thrown.constructor && thrown.constructor.name;
      if (name === 'Error' && typeof ctor === 'string' && ctor && ctor !== 'Error') name = ctor;
    } catch {
      // keep defaults
    }
    let renamed = false;
    try {
      renamed = name !== thrown.name;
    } catch {
      renamed = false;
    }
    try {
      value = typeof thrown.message === 'string' ? thrown.message : safeInspect(thrown.message);
    } catch {
      value = '';
    }
    try {
      traceback = typeof thrown.stack === 'string' ? cleanStack(thrown.stack) : '';
    } catch {
      traceback = '';
    }
    if (!traceback) traceback = value ? `${name}: ${value}` : name;
    else if (renamed && traceback.startsWith('Error:')) traceback = name + traceback.slice(5);
    traceback += causes(thrown);
    return { name: plain(name), value: plain(value), traceback };
  }
  const shown = safeInspect(thrown);
  return { name: 'Error', value: shown, traceback: `Uncaught ${shown}` };
}

const MIME_KEY = /^[a-z]+\/[a-z0-9][\w.+-]*$/i;

function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function jsonValue(value) {
  try {
    const text = JSON.stringify(value);
    return text === undefined ? null : JSON.parse(text);
  } catch {
    return safeInspect(value);
  }
}

function mimeBundle(value) {
  if (isPlainObject(value)) {
    const keys = Object.keys(value);
    if (keys.length > 0 && keys.every((key) => MIME_KEY.test(key))) {
      const bundle = {};
      for (const key of keys) {
        const item = value[key];
        if (key === 'application/json' || key.endsWith('+json')) {
          bundle[key] = jsonValue(item);
        } else if (typeof item === 'string') {
          bundle[key] = item.toWellFormed();
        } else if (item instanceof Uint8Array) {
          bundle[key] = Buffer.from(item.buffer, item.byteOffset, item.byteLength).toString(
            'base64',
          );
        } else if (item !== null && typeof item === 'object') {
          bundle[key] = jsonValue(item);
        } else {
          bundle[key] = String(item);
        }
      }
      return bundle;
    }
  }
  return { 'text/plain': safeInspect(value) };
}

function display(...values) {
  for (const value of values) {
    const bundle = mimeBundle(value);
    let size = 64;
    for (const key in bundle) {
      const item = bundle[key];
      size += typeof item === 'string' ? item.length : 64;
    }
    enqueue({ type: 'display', bundle }, size);
  }
}

// ---------------------------------------------------------------------------------
// globals for user code: display, require, dynamic import helper

let requireCwd = null;
let requireFn = null;
function currentRequire() {
  const cwd = process.cwd();
  if (cwd !== requireCwd) {
    requireFn = createRequire(path.join(cwd, '[cellbox]'));
    requireCwd = cwd;
  }
  return requireFn;
}
function userRequire(id) {
  return currentRequire()(id);
}
userRequire.resolve = (request, options) => currentRequire().resolve(request, options);
userRequire.resolve.paths = (request) => currentRequire().resolve.paths(request);
userRequire.cache = currentRequire().cache;

function cellImport(specifier, options) {
  const spec = String(specifier);
  let target = spec;
  if (
    spec === '.' ||
    spec === '..' ||
    spec.startsWith('./') ||
    spec.startsWith('../') ||
    path.isAbsolute(spec)
  ) {
    target = pathToFileURL(path.resolve(process.cwd(), spec)).href;
  } else if (!/^[a-z][a-z0-9+.-]*:/i.test(spec) && !isBuiltin(spec)) {
    // A bare package name: resolve it from the working directory.
    try {
      target = pathToFileURL(currentRequire().resolve(spec)).href;
    } catch {
      target = spec;
    }
  }
  const loading = options === undefined ? import(target) : import(target, options);
  return loading.catch((err) => {
    // Node names the importing module: that is this worker, not the user's cell.
    const cwd = process.cwd();
    const cwdUrl = pathToFileURL(path.join(cwd, '/')).href;
    for (const key of ['message', 'stack']) {
      try {
        if (typeof err[key] === 'string') {
          err[key] = err[key].replaceAll(import.meta.url, cwdUrl).replaceAll(WORKER_FILE, cwd);
        }
      } catch {
        // a frozen or exotic error: leave it
      }
    }
    throw err;
  });
}

const IMPORT_HELPER = '__cellbox_import__';
const hidden = (value) => ({ value, writable: true, configurable: true, enumerable: false });
Object.defineProperty(globalThis, 'display', hidden(display));
Object.defineProperty(globalThis, 'require', hidden(userRequire));
Object.defineProperty(globalThis, IMPORT_HELPER, {
  value: cellImport,
  writable: false,
  configurable: false,
  enumerable: false,
});
const CAPTURE = Symbol.for('cellbox.capture');
let captured;
Object.defineProperty(globalThis, CAPTURE, {
  value(v) {
    captured = v;
  },
  writable: false,
  configurable: false,
  enumerable: false,
});

// ---------------------------------------------------------------------------------
// tokenizer: enough JavaScript lexing to find top-level statements and imports

const RE_NAME = /[$_\p{ID_Start}\\#][$\p{ID_Continue}\u200c\u200d\\]*/uy;
const RE_NUM = /(?:0[xXoObB][\da-fA-F_]*n?|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?[\d_]+)?n?)/y;
const RE_PUNCT =
  /(?:>>>=|\.\.\.|===|!==|\*\*=|<<=|>>=|>>>|&&=|\|\|=|\?\?=|=>|==|!=|<=|>=|&&|\|\||\?\?|\?\.(?!\d)|\+\+|--|\+=|-=|\*=|\/=|%=|&=|\|=|\^=|<<|>>|\*\*|[^\s])/y;
const BEFORE_EXPR = new Set([
  'return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case',
  'do', 'else', 'yield', 'await', 'extends', 'export', 'default',
]);
const NOT_EXPR_END = new Set([
  'return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case',
  'do', 'else', 'yield', 'await', 'extends', 'export', 'import', 'let', 'const', 'var',
  'function', 'class', 'if', 'for', 'while', 'with', 'switch', 'try', 'catch', 'finally',
  'async',
]);
const BLOCK_HEADS = new Set([
  'function', 'class', 'if', 'for', 'while', 'do', 'try', 'switch', 'with',
]);
const CONTROL_HEADS = new Set(['if', 'for', 'while', 'with']);
const NON_EXPR_HEADS = new Set([
  'var', 'const', 'function', 'class', 'if', 'for', 'while', 'do', 'try', 'switch',
  'return', 'throw', 'break', 'continue', 'debugger', 'with', 'export', 'enum',
]);

function isNewline(c) {
  return c === 10 || c === 13 || c === 0x2028 || c === 0x2029;
}

function regexAllowed(prev) {
  if (prev === null) return true;
  if (prev.k === 'n') return BEFORE_EXPR.has(prev.v);
  if (prev.k === 'p') return !(prev.v === ')' || prev.v === ']' || prev.v === '++' || prev.v === '--');
  return false;
}

function scanTemplate(src, i) {
  const n = src.length;
  while (i < n) {
    const c = src.charCodeAt(i);
    if (c === 92) i += 2;
    else if (c === 96) return { end: i + 1, open: false };
    else if (c === 36 && src.charCodeAt(i + 1) === 123) return { end: i + 2, open: true };
    else i++;
  }
  return { end: n, open: false };
}

// Tokens: k = kind (n name, num, str, tpl, re, p punctuator), v = text (names and
// punctuators), s/e = offsets, d = bracket depth, nl = newline before the token.
function tokenize(src) {
  const toks = [];
  const stack = [];
  const n = src.length;
  let i = 0;
  let nl = false;
  let prev = null;
  const push = (k, v, s, e, d) => {
    prev = { k, v, s, e, d, nl };
    toks.push(prev);
    nl = false;
  };
  while (i < n) {
    const c = src.charCodeAt(i);
    if (isNewline(c)) {
      nl = true;
      i++;
      continue;
    }
    if (c === 32 || c === 9 || c === 11 || c === 12 || c === 0xa0 || c === 0xfeff) {
      i++;
      continue;
    }
    if (c > 127 && /\s/u.test(src[i])) {
      i++;
      continue;
    }
    const s = i;
    if (c === 47) {
      const c2 = src.charCodeAt(i + 1);
      if (c2 === 47) {
        while (i < n && !isNewline(src.charCodeAt(i))) i++;
        continue;
      }
      if (c2 === 42) {
        const end = src.indexOf('*/', i + 2);
        const stop = end < 0 ? n : end + 2;
        if (/[\n\r\u2028\u2029]/.test(src.slice(i, stop))) nl = true;
        i = stop;
        continue;
      }
      if (regexAllowed(prev)) {
        let j = i + 1;
        let inClass = false;
        let ok = false;
        while (j < n) {
          const r = src.charCodeAt(j);
          if (isNewline(r)) break;
          if (r === 92) j += 2;
          else if (r === 91) {
            inClass = true;
            j++;
          } else if (r === 93) {
            inClass = false;
            j++;
          } else if (r === 47 && !inClass) {
            ok = true;
            j++;
            break;
          } else j++;
        }
        if (ok) {
          while (j < n && /[a-z]/i.test(src[j])) j++;
          i = j;
          push('re', undefined, s, i, stack.length);
          continue;
        }
      }
    }
    if (c === 34 || c === 39) {
      let j = i + 1;
      while (j < n) {
        const r = src.charCodeAt(j);
        if (r === 92) j += 2;
        else if (r === c) {
          j++;
          break;
        } else if (isNewline(r)) break;
        else j++;
      }
      i = Math.min(j, n);
      push('str', undefined, s, i, stack.length);
      continue;
    }
    if (c === 96 || (c === 125 && stack[stack.length - 1] === '${')) {
      if (c === 125) stack.pop();
      const t = scanTemplate(src, i + 1);
      i = t.end;
      push('tpl', undefined, s, i, stack.length);
      if (t.open) stack.push('${');
      continue;
    }
    if ((c >= 48 && c <= 57) || (c === 46 && src.charCodeAt(i + 1) >= 48 && src.charCodeAt(i + 1) <= 57)) {
      RE_NUM.lastIndex = i;
      const m = RE_NUM.exec(src);
      i += m ? Math.max(m[0].length, 1) : 1;
      push('num', undefined, s, i, stack.length);
      continue;
    }
    RE_NAME.lastIndex = i;
    const name = RE_NAME.exec(src);
    if (name) {
      i += name[0].length;
      push('n', name[0], s, i, stack.length);
      continue;
    }
    RE_PUNCT.lastIndex = i;
    const m = RE_PUNCT.exec(src);
    const v = m ? m[0] : src[i];
    i += v.length;
    if (v === '(' || v === '[' || v === '{') {
      push('p', v, s, i, stack.length);
      stack.push(v);
    } else if (v === ')' || v === ']' || v === '}') {
      if (stack.length) stack.pop();
      push('p', v, s, i, stack.length);
    } else {
      push('p', v, s, i, stack.length);
    }
  }
  return toks;
}

function endsExpression(t) {
  if (t.k === 'n') return !NOT_EXPR_END.has(t.v);
  if (t.k === 'p') return t.v === ')' || t.v === ']' || t.v === '}' || t.v === '++' || t.v === '--';
  return true;
}

function startsStatement(t) {
  if (t.k === 'n') return t.v !== 'in' && t.v !== 'instanceof';
  if (t.k === 'p') return t.v === '!' || t.v === '~' || t.v === '++' || t.v === '--';
  return t.k !== 'tpl';
}

// Indices (into toks) of the first token of each top-level statement.
function statementHeads(toks) {
  const heads = [];
  let head = null;
  let prevTop = null;
  let parenState = 0; // control head: 1 waiting for its "(...)"
  let bodyNext = false;
  let freshAt = -1; // a static import declaration ends just before this token
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i];
    if (t.d !== 0) continue;
    let fresh;
    if (prevTop === null || i === freshAt) fresh = true;
    else if (bodyNext) fresh = false;
    else if (prevTop.k === 'p' && prevTop.v === ';') fresh = true;
    else if (t.k === 'n' && (t.v === 'else' || t.v === 'catch' || t.v === 'finally')) fresh = false;
    else if (t.k === 'n' && t.v === 'while' && head && head.v === 'do') fresh = false;
    else if (
      prevTop.k === 'p' &&
      prevTop.v === '}' &&
      head &&
      ((head.k === 'n' && BLOCK_HEADS.has(head.v)) || (head.k === 'p' && head.v === '{') ||
        head.asyncFunction)
    ) {
      fresh = true;
    } else fresh = t.nl && endsExpression(prevTop) && startsStatement(t);
    bodyNext = false;
    if (fresh && !(t.k === 'p' && t.v === ';')) {
      head = t;
      if (t.k === 'n' && t.v === 'async') {
        const nx = toks[i + 1];
        t.asyncFunction = !!nx && nx.k === 'n' && nx.v === 'function' && !nx.nl;
      }
      heads.push(i);
      parenState = t.k === 'n' && CONTROL_HEADS.has(t.v) ? 1 : 0;
      if (t.k === 'n' && t.v === 'import') {
        const parsed = parseImport(toks, i);
        if (parsed) freshAt = parsed.next;
      }
    } else if (fresh) {
      head = null;
    }
    if (t.k === 'n' && (t.v === 'else' || t.v === 'do')) bodyNext = true;
    if (parenState === 1 && t.k === 'p' && t.v === ')') {
      parenState = 0;
      bodyNext = true;
    }
    prevTop = t;
  }
  return heads;
}

// Is the statement starting at toks[i] a declaration or control statement?
function isNonExpressionStatement(toks, i) {
  const t = toks[i];
  const nx = toks[i + 1];
  if (t.k === 'p') return t.v === '{';
  if (t.k !== 'n') return false;
  if (NON_EXPR_HEADS.has(t.v)) return true;
  if (t.v === 'let') return !!nx && (nx.k === 'n' || nx.v === '[' || nx.v === '{');
  if (t.v === 'import') return !nx || !(nx.v === '(' || nx.v === '.');
  if (t.v === 'async') return !!t.asyncFunction;
  if (nx && nx.k === 'p' && nx.v === ':' && nx.d === 0) return true; // label
  return false;
}

function matchingClose(toks, open) {
  const depth = toks[open].d;
  for (let j = open + 1; j < toks.length; j++) {
    if (toks[j].d === depth && toks[j].k === 'p' && (toks[j].v === '}' || toks[j].v === ')' || toks[j].v === ']')) {
      return j;
    }
  }
  return -1;
}

// A static `import` declaration starting at toks[hi]: its parts and the index of the
// token after it; null when it is not one we understand.
function parseImport(toks, hi) {
  let j = hi + 1;
  let def = null;
  let ns = null;
  let named = null;
  let spec = null;
  let attrs = null;
  const at = (k) => toks[k] || { k: 'eof', v: undefined };
  if (at(j).k === 'str') {
    spec = at(j);
    j++;
  } else {
    if (at(j).k === 'n' && !(at(j).v === 'from' && at(j + 1).k === 'str')) {
      def = at(j).v;
      j++;
      if (at(j).v === ',') j++;
    }
    if (at(j).v === '*') {
      if (at(j + 1).v !== 'as' || at(j + 2).k !== 'n') return null;
      ns = at(j + 2).v;
      j += 3;
    } else if (at(j).v === '{') {
      named = [];
      j++;
      while (at(j).v !== '}') {
        const item = at(j);
        if (item.k !== 'n' && item.k !== 'str') return null;
        let local = null;
        j++;
        if (at(j).v === 'as') {
          if (at(j + 1).k !== 'n') return null;
          local = at(j + 1).v;
          j += 2;
        } else if (item.k === 'str') {
          return null;
        }
        named.push({ item, local });
        if (at(j).v === ',') j++;
        else if (at(j).v !== '}') return null;
      }
      j++;
    }
    if (def === null && ns === null && named === null) return null;
    if (at(j).v !== 'from' || at(j + 1).k !== 'str') return null;
    spec = at(j + 1);
    j += 2;
  }
  if ((at(j).v === 'with' || at(j).v === 'assert') && at(j + 1).v === '{' && !at(j).nl) {
    const close = matchingClose(toks, j + 1);
    if (close < 0) return null;
    attrs = [toks[j + 1], toks[close]];
    j = close + 1;
  }
  if (at(j).v === ';') j++;
  return { def, ns, named, spec, attrs, next: j };
}

// `import ... from "m"` at the top level -> an edit turning it into an awaited import().
function importEdit(src, toks, hi) {
  const parsed = parseImport(toks, hi);
  if (!parsed) return null;
  const { def, ns, spec, attrs } = parsed;
  const start = toks[hi].s;
  const end = toks[parsed.next - 1].e;
  const attrText = attrs ? `, { with: ${src.slice(attrs[0].s, attrs[1].e)} }` : '';
  const call = `await ${IMPORT_HELPER}(${src.slice(spec.s, spec.e)}${attrText})`;
  let text;
  if (ns !== null) {
    text = `const ${ns} = ${call}${def !== null ? `, ${def} = ${ns}.default` : ''};`;
  } else if (parsed.named !== null) {
    const parts = parsed.named.map(({ item, local }) => {
      const imported = item.k === 'str' ? src.slice(item.s, item.e) : item.v;
      return local === null || local === imported ? imported : `${imported}: ${local}`;
    });
    if (def !== null) parts.unshift(`default: ${def}`);
    text = `const { ${parts.join(', ')} } = ${call};`;
  } else if (def !== null) {
    text = `const ${def} = (${call}).default;`;
  } else {
    text = `${call};`;
  }
  const lines = src.slice(start, end).split('\n').length - 1;
  return { s: start, e: end, text: text + '\n'.repeat(lines) };
}

function blank(src, s, e) {
  return src.slice(s, e).replace(/[^\n]/g, ' ');
}

// Rewrites for a REPL script: static imports, exports, dynamic import().
function rewrite(src, toks) {
  const edits = [];
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i];
    if (t.k !== 'n') continue;
    if (t.v === 'import') {
      const nx = toks[i + 1];
      const pv = toks[i - 1];
      if (nx && nx.v === '(' && !(pv && (pv.v === '.' || pv.v === '?.'))) {
        edits.push({ s: t.s, e: t.e, text: IMPORT_HELPER });
      }
    }
  }
  for (const hi of statementHeads(toks)) {
    const t = toks[hi];
    if (t.k !== 'n') continue;
    if (t.v === 'import') {
      const nx = toks[hi + 1];
      if (nx && (nx.v === '(' || nx.v === '.')) continue;
      const edit = importEdit(src, toks, hi);
      if (edit) edits.push(edit);
    } else if (t.v === 'export') {
      const nx = toks[hi + 1];
      if (!nx) continue;
      if (nx.v === 'default') {
        edits.push({ s: t.s, e: nx.e, text: blank(src, t.s, nx.e) });
      } else if (nx.v === '{' || nx.v === '*') {
        let j = hi + 1;
        if (nx.v === '{') j = matchingClose(toks, hi + 1);
        if (j < 0) continue;
        j++;
        while (j < toks.length && toks[j].k !== 'str' && toks[j].v !== ';' && !toks[j].nl) j++;
        if (j < toks.length && toks[j].k === 'str') j++;
        if (j < toks.length && toks[j].v === ';') j++;
        const end = toks[j - 1].e;
        edits.push({ s: t.s, e: end, text: blank(src, t.s, end) });
      } else {
        edits.push({ s: t.s, e: t.e, text: blank(src, t.s, t.e) });
      }
    }
  }
  if (edits.length === 0) return src;
  edits.sort((a, b) => a.s - b.s);
  let out = '';
  let pos = 0;
  for (const edit of edits) {
    if (edit.s < pos) continue;
    out += src.slice(pos, edit.s) + edit.text;
    pos = edit.e;
  }
  return out + src.slice(pos);
}

// ---------------------------------------------------------------------------------
// TypeScript

function syntaxErrorFromTs(err, cellName) {
  const message = plain(err && err.message ? err.message : String(err));
  let traceback = `SyntaxError: ${message}`;
  const stack = err && typeof err.stack === 'string' ? err.stack : '';
  const cut = stack.indexOf('\n\nSyntaxError');
  if (cut > 0 && stack.startsWith(':')) {
    traceback = `${cellName}${plain(stack.slice(0, cut))}\n\n${traceback}`;
  }
  return { name: 'SyntaxError', value: message, traceback };
}

// Every TypeScript-only construct needs one of these; code without any is plain
// JavaScript that stripping would return unchanged, so the transform is skipped.
const MAYBE_TYPESCRIPT =
  /[:<!?@]|\b(?:as|enum|interface|type|namespace|module|declare|abstract|implements|private|public|protected|readonly|satisfies|override|accessor|keyof|infer|asserts|unique|is)\b/;

// JavaScript for a cell; `transformed` when code had to be generated (positions moved).
function toJavaScript(code) {
  if (!MAYBE_TYPESCRIPT.test(code)) return { js: code, transformed: false };
  try {
    return { js: stripTypeScriptTypes(code, { mode: 'strip' }), transformed: false };
  } catch (err) {
    if (err && err.code === 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX') {
      return { js: stripTypeScriptTypes(code, { mode: 'transform' }), transformed: true };
    }
    throw err;
  }
}

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

function post(method, params) {
  let out = null;
  let error = null;
  let called = false;
  session.post(method, params, (err, res) => {
    called = true;
    error = err;
    out = res;
  });
  if (!called) throw new Error(`inspector ${method} did not answer synchronously`);
  if (error) throw error;
  return out;
}

// The real value behind a RemoteObject.
function remoteValue(obj) {
  if (obj.objectId !== undefined) {
    captured = undefined;
    post('Runtime.callFunctionOn', {
      objectId: obj.objectId,
      functionDeclaration: 'function () { "use strict"; globalThis[Symbol.for("cellbox.capture")](this); }',
      silent: true,
    });
    const value = captured;
    captured = undefined;
    return value;
  }
  if (obj.unserializableValue !== undefined) {
    const u = obj.unserializableValue;
    if (obj.type === 'bigint') return BigInt(u.slice(0, -1));
    if (u === '-0') return -0;
    if (u === 'NaN') return NaN;
    if (u === 'Infinity') return Infinity;
    if (u === '-Infinity') return -Infinity;
    return u;
  }
  if (obj.type === 'undefined') return undefined;
  return obj.value;
}

function releaseGroup(group) {
  try {
    session.post('Runtime.releaseObjectGroup', { objectGroup: group });
  } catch {
    // best effort
  }
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
  lastFlushAt = 0; // the first output of an execution goes out at once
  if (idleDropped > 0) {
    emitText('stderr', `[cellbox: ${idleDropped} characters of background output were dropped]\n`);
    idleDropped = 0;
  }
  if (queue.length) flush();
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

// Promises of REPL scripts whose Runtime.evaluate has not answered yet. The inspector
// holds each one weakly until its answer is sent (a few microtasks after the promise
// settles, or never for a cell interrupted while it awaited `new Promise(() => {})`). If
// the promise is garbage collected in that window, V8 answers "Promise was collected"
// to the in-process session from inside the GC, and the session's JS callback then
// kills the process ("Invoke in DisallowJavascriptExecutionScope"; seen after a few
// thousand `1+1` evaluations). Holding the promise until the answer arrives prevents
// that; only the promises of interrupted, forever-pending cells stay.
const pendingScripts = new Set();

// Runtime.evaluate in REPL mode; `done(err, res, sync)` is called once, when it
// answers; `sync` when it answered before returning (a compile error).
function replEvaluate(expression, objectGroup, done) {
  // The first promise created by Runtime.evaluate is the REPL script's own.
  let scriptPromise = null;
  let stopHook = null;
  stopHook = v8.promiseHooks.onInit((promise) => {
    if (scriptPromise === null) {
      scriptPromise = promise;
      if (stopHook !== null) {
        stopHook();
        stopHook = null;
      }
    }
  });
  let answered = false;
  let returned = false;
  try {
    session.post(
      'Runtime.evaluate',
      {
        expression,
        replMode: true,
        awaitPromise: true,
        silent: true,
        objectGroup,
        generatePreview: false,
        includeCommandLineAPI: false,
      },
      (err, res) => {
        answered = true;
        if (scriptPromise !== null) pendingScripts.delete(scriptPromise);
        done(err, res, !returned);
      },
    );
  } finally {
    returned = true;
    if (stopHook !== null) stopHook();
    stopHook = null;
  }
  if (scriptPromise !== null && !answered) pendingScripts.add(scriptPromise);
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
        queue.push({ type: 'result', bundle: { 'text/plain': safeInspect(outcome.value) } });
      }
    } else if (outcome.kind === 'interrupted') {
      queue.push(INTERRUPTED);
    } else {
      queue.push({ type: 'error', ...outcome.error });
    }
  } catch (failure) {
    queue.push({ type: 'error', ...errorFields(failure) });
  } finally {
    queue.push({ type: 'done' });
    current = null;
    lastDoneId = id;
    flush(id);
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
  queue.push(INTERRUPTED, { type: 'done' });
  lastDoneId = id;
  flush(id);
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

// Node runs timer and immediate callbacks inside an async-context scope that its JS
// pushes and pops. Runtime.terminateExecution skips the pop, and Node then aborts the
// process ("async hook stack has become corrupted") — so interrupting
// `setTimeout(() => { while (true) {} })` would kill the worker. User callbacks given to
// setTimeout/setInterval/setImmediate are therefore started from a microtask, just
// after Node's scope closes (same turn of the event loop, same order), where
// termination is safe. Exceptions they throw still reach 'uncaughtException'.
function runOutsideScope(callback) {
  return function scheduled(...args) {
    const self = this;
    resolved.then(() => {
      try {
        Reflect.apply(callback, self, args);
      } catch (err) {
        process.emit('uncaughtException', err, 'uncaughtException');
      }
    });
  };
}

function wrapTimer(original) {
  const wrapped = {
    [original.name](callback, ...rest) {
      if (typeof callback !== 'function') return original(callback, ...rest);
      return original(runOutsideScope(callback), ...rest);
    },
  }[original.name];
  const custom = original[util.promisify.custom];
  if (custom !== undefined) {
    Object.defineProperty(wrapped, util.promisify.custom, { value: custom, configurable: true });
  }
  return wrapped;
}

{
  const timersModule = createRequire(import.meta.url)('node:timers');
  for (const name of ['setTimeout', 'setInterval', 'setImmediate']) {
    const wrapped = wrapTimer(globalThis[name]);
    Object.defineProperty(globalThis, name, {
      value: wrapped,
      writable: true,
      configurable: true,
      enumerable: true,
    });
    timersModule[name] = wrapped;
  }
  syncBuiltinESMExports();
}

process.on('exit', () => {
  // process.exit() from user code (or EOF): push out what was printed.
  exiting = true;
  try {
    session.disconnect();
  } catch {
    // already gone
  }
  try {
    if (queue.length) {
      const frames = queue;
      queue = [];
      postFrames(frames, 0);
    }
    const deadline = Date.now() + 1000;
    let pending = Atomics.load(S, PENDING);
    while (pending > 0 && Date.now() < deadline) {
      Atomics.wait(S, PENDING, pending, 20);
      pending = Atomics.load(S, PENDING);
    }
  } catch {
    // exiting anyway
  }
});

// ---------------------------------------------------------------------------------
// inspector session, warm-up, ready

const session = new inspector.Session();
session.connect();

{
  // The first transform loads a wasm module (~50 ms): pay it before `ready`, and
  // swallow the one-time ExperimentalWarning it emits.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    stripTypeScriptTypes('let a: number = 1', { mode: 'strip' });
    stripTypeScriptTypes('enum E { A }', { mode: 'transform' });
  } finally {
    process.emitWarning = emitWarning;
  }
  // Run the rest of an execution's path once, so the first cell is not the one that
  // compiles it.
  const sample = 'import { a } from "m"\nexport const b = 1; for (;;) {}\nimport("x"); 1';
  const toks = tokenize(sample);
  rewrite(sample, toks);
  isNonExpressionStatement(toks, statementHeads(toks).at(-1));
  errorFields(new Error('warm-up'));
  JSON.stringify({ type: 'result', bundle: mimeBundle({ a: [1] }) });
}

io.on('message', (msg) => {
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
});

replEvaluate('({ warm: [1, "up"] })', 'warm-up', (err, res) => {
  try {
    if (!err && res && res.result) safeInspect(remoteValue(res.result));
  } catch {
    // only a warm-up
  }
  releaseGroup('warm-up');
  postFrames([{ type: 'ready' }], 0);
});
