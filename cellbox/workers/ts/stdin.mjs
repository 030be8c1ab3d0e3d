// Standard input: code runs without one (the worker's fd 0 is /dev/null), and reading it
// must end at once, never hang until the timeout.
//
// * `rl.question()` (node:readline and node:readline/promises) on standard input waits
//   for an answer that cannot come (Node never settles it when the input ends): it fails
//   at once with StdinUnavailableError, as Python's input() fails at once here.
// * Every other read of `process.stdin` (a 'data'/'end' listener, `for await` over a
//   readline interface, .read()) sees end of input. Node's own stdin ends once per
//   process, and a reader that comes after that would wait forever for an 'end' already
//   emitted: here `process.stdin` is an empty stream, a new one once the last has ended.

import readline from 'node:readline';
import readlinePromises from 'node:readline/promises';
import { Readable } from 'node:stream';

import {
  ObjectDefineProperty,
  process,
  PromiseReject,
  ReflectApply,
  WeakSetCtor,
  WeakSetPrototypeAdd,
  WeakSetPrototypeHas,
} from './intrinsics.mjs';

export class StdinUnavailableError extends Error {
  constructor(what) {
    super(`${what} is not supported: code in this sandbox runs without standard input`);
    this.name = 'StdinUnavailableError';
  }
}

const ours = new WeakSetCtor();
let current = null;

function emptyStdin() {
  const stream = new Readable({
    read() {
      this.push(null);
    },
  });
  stream.fd = 0;
  stream.isTTY = false;
  WeakSetPrototypeAdd(ours, stream);
  return stream;
}

function stdin() {
  if (current === null || current.readableEnded || current.destroyed) current = emptyStdin();
  return current;
}

export function installStdin() {
  ObjectDefineProperty(process, 'stdin', { configurable: true, enumerable: true, get: stdin });
  const callbackQuestion = readline.Interface.prototype.question;
  readline.Interface.prototype.question = function question(...args) {
    if (WeakSetPrototypeHas(ours, this.input)) {
      throw new StdinUnavailableError('readline question()');
    }
    return ReflectApply(callbackQuestion, this, args);
  };
  const promisedQuestion = readlinePromises.Interface.prototype.question;
  readlinePromises.Interface.prototype.question = function question(...args) {
    if (WeakSetPrototypeHas(ours, this.input)) {
      return PromiseReject(new StdinUnavailableError('readline question()'));
    }
    return ReflectApply(promisedQuestion, this, args);
  };
}
