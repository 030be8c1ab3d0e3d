// The in-process V8 inspector session through which cells are evaluated (REPL mode).

import inspector from 'node:inspector';
import v8 from 'node:v8';

import {
  BigIntCtor,
  ErrorCtor,
  ObjectDefineProperty,
  putBack,
  ReflectApply,
  SetCtor,
  SetPrototypeAdd,
  SetPrototypeDelete,
  SetPrototypeHas,
  StringPrototypeSlice,
  SymbolFor,
  takeToJSON,
} from './intrinsics.mjs';

const session = new inspector.Session();
const { connect: connectMethod, disconnect: disconnectMethod, post: postMethod } =
  inspector.Session.prototype;
const { onInit } = v8.promiseHooks;

// Node's session writes each message with JSON.stringify: no toJSON of a cell's may apply.
function sessionPost(method, params, callback) {
  const taken = takeToJSON();
  try {
    ReflectApply(postMethod, session, [method, params, callback]);
  } finally {
    putBack(taken);
  }
}

// The object group of the worker's own remote objects, never released.
const OWN_GROUP = 'cellbox';

// The remote object of the function that Runtime.callFunctionOn hands a value to (the
// real value behind a RemoteObject). The function is reached through a global symbol
// once, at connect(); later calls name it by its objectId, so no global is looked up.
const CAPTURE = SymbolFor('cellbox.capture');
let captured;
let captureId = null;
ObjectDefineProperty(globalThis, CAPTURE, {
  value(v) {
    captured = v;
  },
  writable: false,
  configurable: false,
  enumerable: false,
});

export function connect() {
  ReflectApply(connectMethod, session, []);
  const found = post('Runtime.evaluate', {
    expression: 'globalThis[Symbol.for("cellbox.capture")]',
    objectGroup: OWN_GROUP,
    silent: true,
  });
  captureId = found.result.objectId;
}

export function disconnect() {
  try {
    ReflectApply(disconnectMethod, session, []);
  } catch {
    // already gone
  }
}

function post(method, params) {
  let out = null;
  let error = null;
  let called = false;
  sessionPost(method, params, (err, res) => {
    called = true;
    error = err;
    out = res;
  });
  if (!called) throw new ErrorCtor(`inspector ${method} did not answer synchronously`);
  if (error) throw error;
  return out;
}

// The real value behind a RemoteObject.
export function remoteValue(obj) {
  if (obj.objectId !== undefined) {
    captured = undefined;
    post('Runtime.callFunctionOn', {
      objectId: captureId,
      functionDeclaration: 'function (value) { "use strict"; this(value); }',
      arguments: [{ objectId: obj.objectId }],
      silent: true,
    });
    const value = captured;
    captured = undefined;
    return value;
  }
  if (obj.unserializableValue !== undefined) {
    const u = obj.unserializableValue;
    if (obj.type === 'bigint') return BigIntCtor(StringPrototypeSlice(u, 0, -1));
    if (u === '-0') return -0;
    if (u === 'NaN') return NaN;
    if (u === 'Infinity') return Infinity;
    if (u === '-Infinity') return -Infinity;
    return u;
  }
  if (obj.type === 'undefined') return undefined;
  return obj.value;
}

// The object groups that hold a remote object: an evaluation puts its result and its thrown
// value there only when they are objects (`1+1` leaves its group empty), so most cells need
// no Runtime.releaseObjectGroup, a round trip through the inspector (~5% of a warm cell's
// CPU on the main thread).
const heldGroups = new SetCtor();

function holdsObject(res) {
  if (!res) return false;
  if (res.result && res.result.objectId !== undefined) return true;
  const details = res.exceptionDetails;
  return !!(details && details.exception && details.exception.objectId !== undefined);
}

export function releaseGroup(group) {
  if (!SetPrototypeHas(heldGroups, group)) return;
  SetPrototypeDelete(heldGroups, group);
  try {
    sessionPost('Runtime.releaseObjectGroup', { objectGroup: group });
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
const pendingScripts = new SetCtor();

// Runtime.evaluate in REPL mode; `done(err, res, sync)` is called once, when it
// answers; `sync` when it answered before returning (a compile error).
export function replEvaluate(expression, objectGroup, done) {
  // The first promise created by Runtime.evaluate is the REPL script's own.
  let scriptPromise = null;
  // The cell runs inside the post below, once Node has written the message: a toJSON
  // taken off for that is put back as the cell starts (its first promise) or answers
  // (a compile error), before any code of the cell's runs.
  let taken = null;
  let stopHook = null;
  stopHook = onInit((promise) => {
    if (scriptPromise === null) {
      scriptPromise = promise;
      putBack(taken);
      taken = null;
      if (stopHook !== null) {
        stopHook();
        stopHook = null;
      }
    }
  });
  let answered = false;
  let returned = false;
  taken = takeToJSON();
  try {
    ReflectApply(postMethod, session, [
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
        putBack(taken);
        taken = null;
        answered = true;
        if (holdsObject(res)) SetPrototypeAdd(heldGroups, objectGroup);
        if (scriptPromise !== null) SetPrototypeDelete(pendingScripts, scriptPromise);
        done(err, res, !returned);
      },
    ]);
  } finally {
    putBack(taken);
    taken = null;
    returned = true;
    if (stopHook !== null) stopHook();
    stopHook = null;
  }
  if (scriptPromise !== null && !answered) SetPrototypeAdd(pendingScripts, scriptPromise);
}
