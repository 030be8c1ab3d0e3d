// The in-process V8 inspector session through which cells are evaluated (REPL mode).

import inspector from 'node:inspector';
import v8 from 'node:v8';

const session = new inspector.Session();

export function connect() {
  session.connect();
}

export function disconnect() {
  try {
    session.disconnect();
  } catch {
    // already gone
  }
}

// Runtime.callFunctionOn hands a remote object to this global: the real value.
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
export function remoteValue(obj) {
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

export function releaseGroup(group) {
  try {
    session.post('Runtime.releaseObjectGroup', { objectGroup: group });
  } catch {
    // best effort
  }
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
export function replEvaluate(expression, objectGroup, done) {
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
