// How values and errors look to the user: util.inspect without colours, stacks without
// the worker's frames, MIME bundles for display().

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import util from 'node:util';

// Frames of any module of this worker are its own, not the user's.
const WORKER_DIR = path.dirname(fileURLToPath(import.meta.url)) + path.sep;
const WORKER_URL = new URL('./', import.meta.url).href;

const inspectOptions = { colors: false };
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)/g;

export function plain(text) {
  return String(text).replace(ANSI, '').toWellFormed();
}

export function safeInspect(value) {
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

export function isErrorLike(value) {
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
      if (line.includes(WORKER_DIR) || line.includes(WORKER_URL)) continue;
    }
    out.push(line);
  }
  while (out.length && out[out.length - 1].trim() === '') out.pop();
  return plain(out.join('\n'));
}

// The stacks user code sees (`err.stack`, `console.log(err)`, an error shown as a value)
// hold the user's frames only: the worker's own are dropped, and so is everything below
// the inspector call that runs a cell. Node's formatting is kept (a filter in front of its
// Error.prepareStackTrace); a prepareStackTrace the user sets replaces this one.
export function installStackFilter() {
  const format = Error.prepareStackTrace;
  if (typeof format !== 'function') return;
  Error.prepareStackTrace = function prepareStackTrace(error, frames) {
    return Reflect.apply(format, this, [error, userFrames(frames)]);
  };
}

function userFrames(frames) {
  const kept = [];
  for (const frame of frames) {
    let file = '';
    try {
      file = String(frame.getFileName() ?? '');
    } catch {
      // a frame without a file: the user's
    }
    if (file === 'node:inspector') break;
    if (file.startsWith(WORKER_DIR) || file.startsWith(WORKER_URL)) continue;
    kept.push(frame);
  }
  return kept;
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

export function mimeBundle(value) {
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
