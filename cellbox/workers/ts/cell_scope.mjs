// Which cell a piece of code belongs to. Each cell is evaluated inside its own scope of an
// AsyncLocalStorage, and Node carries that scope into everything the cell's code goes on
// to run: the continuations after its awaits and the callbacks of the timers it sets. So
// once a cell has been interrupted (or timed out), what it left pending can be told
// apart from the code of later cells and of cells that finished (see timers.mjs).

import { AsyncLocalStorage } from 'node:async_hooks';

import { ReflectApply } from './intrinsics.mjs';

const store = new AsyncLocalStorage();
const { getStore, run } = AsyncLocalStorage.prototype;

/** A new cell's scope; `interrupted` is set when its execution is interrupted. */
export function newScope() {
  return { interrupted: false };
}

/** Runs `fn` as code of the cell whose scope is `scope`. */
export function runInScope(scope, fn) {
  return ReflectApply(run, store, [scope, fn]);
}

/** The scope of the cell whose code is running (undefined: the worker's own code). */
export function currentScope() {
  return ReflectApply(getStore, store, []);
}
