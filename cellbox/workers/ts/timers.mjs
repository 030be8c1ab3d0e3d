// The timers user code gets: setTimeout/setInterval/setImmediate (global, node:timers,
// node:timers/promises and util.promisify's) whose callbacks can be interrupted safely
// and which die with a cell that was interrupted.
//
// * Node runs timer and immediate callbacks inside an async-context scope that its JS
//   pushes and pops. Runtime.terminateExecution skips the pop, and Node then aborts the
//   process ("async hook stack has become corrupted") — so interrupting
//   `setTimeout(() => { while (true) {} })` would kill the worker. User callbacks are
//   therefore started from a microtask, just after Node's scope closes (same turn of the
//   event loop, same order), where termination is safe. Exceptions they throw still
//   reach 'uncaughtException'.
// * A cell interrupted while it awaits keeps its continuation. If what it awaits is a
//   timer (`await sleep(100)` in a polling loop), the loop would go on in the background
//   forever, printing into later executions. So the timers a cell set (itself or from its
//   continuations, see cell_scope.mjs) never fire once it was interrupted: a sleeping
//   loop stays asleep, an interval stops. Timers of cells that finished keep running,
//   but an interval whose callback an interrupt cut short is cleared.

import { createRequire, syncBuiltinESMExports } from 'node:module';
import util from 'node:util';

import { currentScope } from './cell_scope.mjs';
import {
  ObjectDefineProperty,
  PromiseCtor,
  PromisePrototypeThen,
  processEmit,
  ReflectApply,
} from './intrinsics.mjs';
import { emitText, inMicrotask } from './output.mjs';

const require = createRequire(import.meta.url);
const NEVER = new PromiseCtor(() => {});
// Node's own, as they were before any cell ran.
const { clearInterval } = globalThis;

// The interval whose callback runs now. Still set once the callback is over only if an
// interrupt's termination cut it short: that interval is then cleared, or a busy one
// that fires again at once would keep every later execution from running.
let runningInterval = null;

/** Clears an interval whose callback an interrupt stopped; true if there was one. */
export function clearInterruptedInterval() {
  const timer = runningInterval;
  if (timer === null) return false;
  runningInterval = null;
  clearInterval(timer);
  emitText('stderr', '[cellbox: an interrupt stopped a setInterval callback; the interval was cleared]\n');
  return true;
}

function runOutsideScope(callback, repeats) {
  const scope = currentScope();
  return function scheduled(...args) {
    if (scope !== undefined && scope.interrupted) {
      if (repeats) clearInterval(this);
      return;
    }
    const self = this;
    inMicrotask(() => {
      const cut = runningInterval;
      if (cut !== null && clearInterruptedInterval() && cut === self) return;
      if (repeats) runningInterval = self;
      try {
        ReflectApply(callback, self, args);
      } catch (err) {
        processEmit('uncaughtException', err, 'uncaughtException');
      }
      if (repeats) runningInterval = null;
    });
  };
}

function wrapTimer(original, promised) {
  const repeats = original.name === 'setInterval';
  const wrapped = {
    [original.name](callback, ...rest) {
      if (typeof callback !== 'function') return ReflectApply(original, undefined, arguments);
      const args = [runOutsideScope(callback, repeats)];
      for (let i = 0; i < rest.length; i++) args[i + 1] = rest[i];
      return ReflectApply(original, undefined, args);
    },
  }[original.name];
  const custom = promised ?? original[util.promisify.custom];
  if (custom !== undefined) {
    ObjectDefineProperty(wrapped, util.promisify.custom, { value: custom, configurable: true });
  }
  return wrapped;
}

// timers/promises' setTimeout and setImmediate: an interrupted cell's never settle.
function wrapPromised(original) {
  return {
    [original.name](...args) {
      const scope = currentScope();
      const waiting = ReflectApply(original, this, args);
      if (scope === undefined) return waiting;
      return PromisePrototypeThen(waiting, (value) => (scope.interrupted ? NEVER : value));
    },
  }[original.name];
}

export function installTimers() {
  const timersModule = require('node:timers');
  const promisesModule = require('node:timers/promises');
  for (const name of ['setTimeout', 'setInterval', 'setImmediate']) {
    let promised;
    if (name !== 'setInterval') {
      promised = wrapPromised(promisesModule[name]);
      promisesModule[name] = promised;
    }
    const wrapped = wrapTimer(globalThis[name], promised);
    ObjectDefineProperty(globalThis, name, {
      value: wrapped,
      writable: true,
      configurable: true,
      enumerable: true,
    });
    timersModule[name] = wrapped;
  }
  syncBuiltinESMExports();
}
