// How values and errors look to the user: util.inspect without colours, stacks without
// the worker's frames, MIME bundles for display().

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import util from 'node:util';

import {
  ArrayIsArray,
  ArrayPrototypeJoin,
  ArrayPrototypePop,
  ArrayPrototypePush,
  BufferFrom,
  BufferPrototypeToString,
  ErrorCtor,
  JSONParse,
  JSONStringify,
  MathMin,
  ObjectGetPrototypeOf,
  ObjectKeys,
  ObjectPrototype,
  ReflectApply,
  RegExpPrototypeExec,
  regExpTest,
  SetCtor,
  SetPrototypeAdd,
  SetPrototypeHas,
  StringCtor,
  StringPrototypeEndsWith,
  StringPrototypeIncludes,
  StringPrototypeSlice,
  StringPrototypeSplit,
  StringPrototypeStartsWith,
  StringPrototypeToWellFormed,
  StringPrototypeTrim,
  Uint8ArrayCtor,
} from './intrinsics.mjs';
import { userPositionFrame } from './source_maps.mjs';

const { inspect } = util;
const { isNativeError } = util.types;

// Frames of any module of this worker are its own, not the user's.
const WORKER_DIR = path.dirname(fileURLToPath(import.meta.url)) + path.sep;
const WORKER_URL = new URL('./', import.meta.url).href;

const inspectOptions = { colors: false };
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)/g;

export function plain(text) {
  return StringPrototypeToWellFormed(withoutAnsi(StringCtor(text)));
}

function withoutAnsi(text) {
  ANSI.lastIndex = 0;
  let match = RegExpPrototypeExec(ANSI, text);
  if (match === null) return text;
  let out = '';
  let from = 0;
  while (match !== null) {
    out += StringPrototypeSlice(text, from, match.index);
    from = ANSI.lastIndex;
    match = RegExpPrototypeExec(ANSI, text);
  }
  return out + StringPrototypeSlice(text, from);
}

export function safeInspect(value) {
  try {
    return plain(inspect(value, inspectOptions));
  } catch (err) {
    let why = 'unknown error';
    try {
      why = StringCtor(err && err.message);
    } catch {
      // keep the generic reason
    }
    return `[value could not be inspected: ${plain(why)}]`;
  }
}

export function isErrorLike(value) {
  try {
    if (value instanceof ErrorCtor || isNativeError(value)) return true;
    return (
      value !== null &&
      typeof value === 'object' &&
      typeof value.message === 'string' &&
      typeof value.stack === 'string'
    );
  } catch {
    return false; // a getter or a proxy's trap threw: shown as a value
  }
}

const FRAME = /^\s+at /;

function cleanStack(stack) {
  const lines = StringPrototypeSplit(StringCtor(stack), '\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (regExpTest(FRAME, line)) {
      // Frames below the cell (the inspector call into it) and the worker's own.
      if (
        StringPrototypeIncludes(line, '(node:inspector:') ||
        StringPrototypeIncludes(line, 'at Session.post ')
      ) {
        break;
      }
      if (StringPrototypeIncludes(line, WORKER_DIR) || StringPrototypeIncludes(line, WORKER_URL)) {
        continue;
      }
    }
    ArrayPrototypePush(out, line);
  }
  while (out.length && StringPrototypeTrim(out[out.length - 1]) === '') ArrayPrototypePop(out);
  return plain(ArrayPrototypeJoin(out, '\n'));
}

// The stacks user code sees (`err.stack`, `console.log(err)`, an error shown as a value)
// hold the user's frames only: the worker's own are dropped, and so is everything below
// the inspector call that runs a cell. Node's formatting is kept (a filter in front of its
// Error.prepareStackTrace); a prepareStackTrace the user sets replaces this one.
export function installStackFilter() {
  const format = Error.prepareStackTrace;
  if (typeof format !== 'function') return;
  Error.prepareStackTrace = function prepareStackTrace(error, frames) {
    return ReflectApply(format, this, [error, userFrames(frames)]);
  };
}

function userFrames(frames) {
  const kept = [];
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i];
    let file = '';
    try {
      file = StringCtor(frame.getFileName() ?? '');
    } catch {
      // a frame without a file: the user's
    }
    if (file === 'node:inspector') break;
    if (StringPrototypeStartsWith(file, WORKER_DIR) || StringPrototypeStartsWith(file, WORKER_URL)) {
      continue;
    }
    ArrayPrototypePush(kept, userPositionFrame(frame));
  }
  return kept;
}

// The `cause` chain of an error, as text to append to its traceback.
function causes(err) {
  let text = '';
  const seen = new SetCtor();
  SetPrototypeAdd(seen, err);
  try {
    let cause = err.cause;
    while (cause !== undefined && !SetPrototypeHas(seen, cause) && seen.size <= 5) {
      SetPrototypeAdd(seen, cause);
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

// The errors an AggregateError (Promise.any, or one a cell made) holds, as text to append
// to its traceback: uncaught, Node shows them too, and they say why.
const SHOWN_ERRORS = 10;
function aggregated(err) {
  let text = '';
  try {
    const errors = err.errors;
    if (!ArrayIsArray(errors)) return '';
    const shown = MathMin(errors.length, SHOWN_ERRORS);
    for (let i = 0; i < shown; i++) {
      const item = errors[i];
      const body =
        isErrorLike(item) && typeof item.stack === 'string'
          ? cleanStack(item.stack)
          : safeInspect(item);
      text += `\n\nError ${i + 1} of ${errors.length}: ${body}`;
    }
    if (errors.length > shown) text += `\n\n… and ${errors.length - shown} more errors`;
  } catch {
    // exotic errors: what we have is enough
  }
  return text;
}

export function errorFields(thrown) {
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
    else if (renamed && StringPrototypeStartsWith(traceback, 'Error:')) {
      traceback = name + StringPrototypeSlice(traceback, 5);
    }
    traceback += aggregated(thrown) + causes(thrown);
    return { name: plain(name), value: plain(value), traceback };
  }
  const shown = safeInspect(thrown);
  return { name: 'Error', value: shown, traceback: `Uncaught ${shown}` };
}

const MIME_KEY = /^[a-z]+\/[a-z0-9][\w.+-]*$/i;

function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = ObjectGetPrototypeOf(value);
  return proto === ObjectPrototype || proto === null;
}

function jsonValue(value) {
  try {
    const text = JSONStringify(value);
    return text === undefined ? null : JSONParse(text);
  } catch {
    return safeInspect(value);
  }
}

export function mimeBundle(value) {
  if (isPlainObject(value)) {
    const keys = ObjectKeys(value);
    let mime = keys.length > 0;
    for (let i = 0; mime && i < keys.length; i++) mime = regExpTest(MIME_KEY, keys[i]);
    if (mime) {
      const bundle = { __proto__: null }; // no setter of Object.prototype applies
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        const item = value[key];
        if (key === 'application/json' || StringPrototypeEndsWith(key, '+json')) {
          bundle[key] = jsonValue(item);
        } else if (typeof item === 'string') {
          bundle[key] = StringPrototypeToWellFormed(item);
        } else if (item instanceof Uint8ArrayCtor) {
          const bytes = BufferFrom(item.buffer, item.byteOffset, item.byteLength);
          bundle[key] = BufferPrototypeToString(bytes, 'base64');
        } else if (item !== null && typeof item === 'object') {
          bundle[key] = jsonValue(item);
        } else {
          bundle[key] = StringCtor(item);
        }
      }
      return bundle;
    }
  }
  return { 'text/plain': safeInspect(value) };
}
