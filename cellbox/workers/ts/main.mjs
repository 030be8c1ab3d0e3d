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
// * The socket is read by the main thread between executions (input.mjs): a request
//   reaches it straight from the socket. While an execution runs, an "io" worker thread
//   reads it (also while the main thread is stuck in user code) and forwards what it reads
//   with postMessage; it starts reading only once the execution has run for a few
//   milliseconds, so it does not wake for a short one (the hand-over: io_thread.mjs). A
//   main thread stuck in code between executions is made to yield the reading.
// * The io thread writes the frames that
//   the main thread posts to it. Output goes through it, so a frame is always written
//   whole even if user code on the main thread is terminated in the middle of printing.
//   The frames that end an execution are the exception: when the io thread has nothing
//   left to write, the main thread writes them itself, in one write system call, after
//   its code is over (output.mjs, writeEnd), so the answer does not wait for a thread
//   wake-up. The main thread applies backpressure with Atomics when more than
//   OUT_LIMIT characters are waiting to be written.
// * Interrupt: the io thread sets a shared flag and posts `interrupt` to the main
//   thread. If the main thread is idle (the cell is pending on an await), it finishes
//   the execution at once with `Interrupted`. If it is busy running JS (checked via
//   /proc/self/task/<pid>/stat, 'R'), the io thread calls `Runtime.terminateExecution`
//   through its own inspector session (connectToMainThread), which stops even
//   `for(;;){try{while(true){}}catch{}}` and keeps the context and its state. The
//   terminate is only sent while the main thread is running (a terminate sent while
//   it is idle would kill whatever JS runs next), and the interrupt message is re-sent
//   until the execution is over, so a lost message cannot wedge the worker.
// * One cell's evaluation (TypeScript, the import rewrite, the last-expression rule,
//   results): see cell.mjs.
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
// * Code blocked inside a system call (a read on a pipe, a synchronous sleep) can only
//   be terminated once the call returns; the server kills the worker after its grace
//   period. A call that waits for a child process (execSync, spawnSync) returns once
//   the io thread has sent SIGINT to the processes this execution started, as Ctrl-C
//   in a terminal would (io_thread.mjs).
// * Terminating JS that runs inside an async scope pushed by Node's own JavaScript
//   aborts the process. setTimeout/setInterval/setImmediate callbacks are moved out of
//   that scope (see timers.mjs); code run through AsyncResource.runInAsyncScope
//   is not, and interrupting it while it spins ends the context (the server restarts).
// * An interval whose callback an interrupt cut short is cleared (timers.mjs).
// * A cell interrupted while it awaits keeps its continuation. The timers it set never
//   fire any more (timers.mjs), so a loop that sleeps stays asleep; if it awaits
//   something else (a network answer, a promise of an earlier cell) that settles later,
//   the rest of the cell runs then, in the background.
// * Output written to fd 1/2 through fs (fs.writeSync(1), /dev/stdout) is captured
//   (fd_output.mjs), and child processes given them (stdio 'inherit') get pipes instead
//   (child_output.mjs); what native code writes to them itself is not.

// Modules: main.mjs (this: startup, the protocol) · cell.mjs (one execution's cell:
// env, REPL script, evaluation, outcome) · input.mjs (the main thread's reading of the
// socket) · io_thread.mjs · output.mjs (the ordered
// outgoing queue) · console.mjs (capture) · inspector.mjs (evaluation) · tokenizer.mjs
// (statements) · import_rewrite.mjs (imports, exports) · typescript.mjs · render.mjs
// (values, errors, bundles) · globals.mjs (display, require, import) · timers.mjs ·
// cell_scope.mjs (which cell code belongs to) · esm_hooks.mjs · intrinsics.mjs (the
// built-ins the worker uses, taken at startup: cells may replace or delete the globals) ·
// child_output.mjs (child processes given the worker's stdout/stderr) · fd_output.mjs
// (fs writes to fds 1 and 2; thread_output.cjs, of worker_threads) · disposal.mjs
// (top-level `using`).

import { MessageChannel, MessagePort } from 'node:worker_threads';

import {
  lastStatementIsExpression,
  newExecution,
  restoreEnv,
  runCell,
  warmUpCell,
} from './cell.mjs';
import { installConsole } from './console.mjs';
import { installGlobals } from './globals.mjs';
import { readingBack, startInput, takeReading } from './input.mjs';
import {
  ArrayPrototypeFind,
  ArrayPrototypePush,
  ArrayPrototypeShift,
  AtomicsLoad,
  listener,
  NumberIsInteger,
  process,
  processChdir,
  processExit,
  processListenerCount,
  processOn,
  ReflectApply,
  TypeErrorCtor,
} from './intrinsics.mjs';
import { connect, disconnect, releaseGroup, remoteValue, replEvaluate } from './inspector.mjs';
import {
  beginExecution,
  doneQueued,
  emitText,
  endExecution,
  flushAtExit,
  INTERRUPT,
  postFrames,
  push,
  S,
  startIo,
} from './output.mjs';
import { errorFields, installStackFilter, isErrorLike, plain, safeInspect } from './render.mjs';
import { clearInterruptedInterval } from './timers.mjs';

const fdArg = process.argv.indexOf('--fd');
const FD = fdArg >= 0 ? Number(process.argv[fdArg + 1]) : NaN;
if (!NumberIsInteger(FD) || FD < 0) {
  process.stderr.write('usage: node main.mjs --fd N\n');
  process.exit(2);
}

// The worker's own scheduling: Node's, not the user's timers (timers.mjs) that die with an
// interrupted cell (this module may run inside a cell's scope, from its outcome).
const { setImmediate } = globalThis;
const postToPort = MessagePort.prototype.postMessage;

let current = null; // the running execution
const waiting = []; // executions received while one runs (not expected by protocol)

// First, so the io thread boots while the main thread warms up.
startIo(FD, onMessage);
startInput(FD, onMessage);

// ---------------------------------------------------------------------------------
// executions

let cellCount = 0;

function startExecution(msg) {
  listenForBackgroundErrors();
  const ex = newExecution(msg.id, ++cellCount);
  current = ex;
  beginExecution(msg.serverId);
  if (msg.interrupted) {
    finish(ex.id, { kind: 'interrupted' });
    return;
  }
  runCell(ex, msg, (outcome) => finish(ex.id, outcome), () => ex === current);
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
  ex.outcome = outcome;
  restoreEnv(ex);
  listenForBackgroundErrors();
  if (outcome.kind === 'interrupted') {
    ex.scope.interrupted = true; // its timers die with it (timers.mjs)
    ex.concluding = true;
    conclude(ex);
  } else {
    // Node reports the promises this turn left rejected without a handler only once the
    // turn is over (`f()` of an async function that throws, without await): wait for that,
    // so they are told by this execution rather than by the next one.
    ex.concluding = true;
    ReflectApply(postToPort, nextTurn.port1, [ex.id]);
  }
}

// The next turn of the event loop, as a message to ourselves: not an immediate, because a
// termination that lands in Node's own code around an immediate callback aborts Node (see
// timers.mjs), and rendering the value runs user code (a custom inspect) that an interrupt
// may have to stop. Node's MessagePort dispatch, where cells run too, is safe.
const nextTurn = new MessageChannel();
nextTurn.port2.on(
  'message',
  listener((id) => {
    if (current && current.id === id) conclude(current);
  }),
);
nextTurn.port1.unref();
nextTurn.port2.unref();

// The execution's outcome and `done` are sent. `lastDoneId` moves only once they are on
// their way, so an interrupt whose termination cut this short still finds it unfinished.
function conclude(ex) {
  if (current !== ex || !ex.concluding) return;
  ex.concluding = false;
  let outcome = ex.outcome;
  if (outcome.kind !== 'interrupted' && AtomicsLoad(S, INTERRUPT) === ex.id) {
    // Interrupted before its answer went out: its code had returned, but what it left for
    // this turn (a busy process.nextTick callback) may just have been terminated.
    ex.scope.interrupted = true;
    outcome = { kind: 'interrupted' };
  }
  try {
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
    endExecution(ex.id);
    lastDoneId = ex.id;
    releaseGroup(ex.group);
    takeReading();
  }
  if (waiting.length) setImmediate(startNext);
}

function startNext() {
  if (current || waiting.length === 0) return;
  startExecution(ArrayPrototypeShift(waiting));
}

function onInterrupt(id) {
  if (id <= lastDoneId) return;
  if (current && current.id === id && !current.finished) {
    finish(id, { kind: 'interrupted' });
    return;
  }
  if (current && current.id === id && current.concluding) {
    conclude(current); // its outcome is known: send it now
    return;
  }
  const queued = ArrayPrototypeFind(waiting, (msg) => msg.id === id);
  if (queued) {
    queued.interrupted = true;
    return;
  }
  // A termination cut short the handler that started or finished this execution
  // (it landed in the worker's own code): end it here, or it would never be done. Its
  // `done` may be queued already, or even sent (postFrames then drops this one).
  current = null;
  if (!doneQueued()) push(INTERRUPTED, { type: 'done' });
  endExecution(id);
  lastDoneId = id;
  takeReading();
  if (waiting.length) setImmediate(startNext);
}

// `chdir` (sent between executions): answered at once, ahead of any held output,
// because the server reads the answer as the next frame.
function changeDirectory(target) {
  let reply;
  try {
    if (typeof target !== 'string') throw new TypeErrorCtor("chdir: 'path' must be a string");
    processChdir(target);
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
const uncaught = (err) => backgroundError('Uncaught', err);
const unhandled = (reason) => backgroundError('Uncaught (in promise)', reason);
// A cell may remove every listener of process (`process.removeAllListeners()`): without
// these an error of background code would end the process, or vanish. They are put back
// as each execution starts and finishes.
function listenForBackgroundErrors() {
  if (processListenerCount('uncaughtException', uncaught) === 0) {
    processOn('uncaughtException', uncaught);
  }
  if (processListenerCount('unhandledRejection', unhandled) === 0) {
    processOn('unhandledRejection', unhandled);
  }
}
listenForBackgroundErrors();

// process.exit() from user code (or EOF): push out what was printed, also by the user's
// 'exit' listeners, which run after any of ours: so at the exit itself, which Node's
// process.exit() makes through process.reallyExit once the listeners have run.
const reallyExit = process.reallyExit;
process.reallyExit = function exitAfterFlush(code) {
  disconnect();
  try {
    flushAtExit();
  } catch {
    // exiting anyway
  }
  return ReflectApply(reallyExit, this, [code]);
};

// ---------------------------------------------------------------------------------
// startup (the io thread is already running): capture, globals, inspector, warm-up, ready

installConsole();
installGlobals();
installStackFilter();
connect();
warmUpCell();

function onMessage(msg) {
  clearInterruptedInterval();
  if (msg.op === 'execute') {
    if (current) ArrayPrototypePush(waiting, msg);
    else startExecution(msg);
  } else if (msg.op === 'interrupt') {
    onInterrupt(msg.id);
  } else if (msg.op === 'chdir') {
    changeDirectory(msg.path);
  } else if (msg.op === 'reader') {
    readingBack();
  } else if (msg.op === 'eof') {
    processExit(0);
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
