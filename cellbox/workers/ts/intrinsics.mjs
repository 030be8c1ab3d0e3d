// The built-ins the worker's own machinery uses, taken when the worker starts, before any
// user code runs. A cell may delete or replace globals and built-in methods (`delete
// globalThis.JSON`, `Array.prototype.map = ...`, `globalThis.Promise = undefined`); that
// must change what its own code sees, never the protocol, or an execution could not send
// its answer and the context would hang until it is killed. So the worker's modules call
// these and no global: a method becomes a function taking its receiver first
// (`ArrayPrototypePush(list, x)` for `list.push(x)`), bound to the built-in as it was at
// startup. Node's own JavaScript does the same (its "primordials"), which is why the Node
// APIs the worker calls keep working too.
// Iteration is user-replaceable as well (`Array.prototype[Symbol.iterator]`), so worker
// code loops with indices, never with for-of, spread or array destructuring.
// The io thread (io_thread.mjs) runs in a realm of its own that cells cannot reach.

import { Buffer } from 'node:buffer';
import process from 'node:process';

export { Buffer, process };

const { apply, bind, call } = Function.prototype;
// uncurry(f)(self, ...args) is f.call(self, ...args), with the `call` of startup.
const uncurry = Reflect.apply(bind, bind, [call]);

/** `fn` as a listener of a Node EventEmitter, which calls a lone listener through
 * `listener.apply(...)`: the built-in `apply` and `call` become its own, so a cell that
 * replaces Function.prototype.apply does not cut the worker off its events. */
export function listener(fn) {
  Object.defineProperty(fn, 'apply', { value: apply });
  Object.defineProperty(fn, 'call', { value: call });
  return fn;
}

export const { apply: ReflectApply } = Reflect;
export const { stringify: JSONStringify, parse: JSONParse } = JSON;
export const {
  assign: ObjectAssign,
  defineProperty: ObjectDefineProperty,
  getPrototypeOf: ObjectGetPrototypeOf,
  hasOwn: ObjectHasOwn,
  keys: ObjectKeys,
  prototype: ObjectPrototype,
} = Object;
const { getOwnPropertyDescriptor: ObjectGetOwnPropertyDescriptor } = Object;
const { ownKeys: ReflectOwnKeys, deleteProperty: ReflectDeleteProperty } = Reflect;
export const { min: MathMin, max: MathMax } = Math;
export const { now: DateNow } = Date;
export const { isInteger: NumberIsInteger } = Number;
export const {
  add: AtomicsAdd,
  compareExchange: AtomicsCompareExchange,
  exchange: AtomicsExchange,
  load: AtomicsLoad,
  notify: AtomicsNotify,
  store: AtomicsStore,
  sub: AtomicsSub,
  wait: AtomicsWait,
} = Atomics;

export const StringCtor = String;
export const BigIntCtor = BigInt;
export const ErrorCtor = Error;
export const TypeErrorCtor = TypeError;
export const SyntaxErrorCtor = SyntaxError;
export const MapCtor = Map;
export const SetCtor = Set;
export const WeakSetCtor = WeakSet;
export const PromiseCtor = Promise;
export const Uint8ArrayCtor = Uint8Array;
const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype);
export const TypedArrayPrototypeSet = uncurry(TypedArrayPrototype.set);
export const TypedArrayPrototypeSubarray = uncurry(TypedArrayPrototype.subarray);
export const SymbolFor = Symbol.for;

export const ArrayIsArray = Array.isArray;
export const ArrayPrototypeAt = uncurry(Array.prototype.at);
export const ArrayPrototypeFind = uncurry(Array.prototype.find);
export const ArrayPrototypeIncludes = uncurry(Array.prototype.includes);
export const ArrayPrototypeIndexOf = uncurry(Array.prototype.indexOf);
export const ArrayPrototypeJoin = uncurry(Array.prototype.join);
export const ArrayPrototypePop = uncurry(Array.prototype.pop);
export const ArrayPrototypePush = uncurry(Array.prototype.push);
export const ArrayPrototypeShift = uncurry(Array.prototype.shift);
export const ArrayPrototypeSlice = uncurry(Array.prototype.slice);
export const ArrayPrototypeSort = uncurry(Array.prototype.sort);
export const ArrayPrototypeSplice = uncurry(Array.prototype.splice);

export const StringPrototypeCharAt = uncurry(String.prototype.charAt);
export const StringPrototypeCharCodeAt = uncurry(String.prototype.charCodeAt);
export const StringPrototypeEndsWith = uncurry(String.prototype.endsWith);
export const StringPrototypeIncludes = uncurry(String.prototype.includes);
export const StringPrototypeIndexOf = uncurry(String.prototype.indexOf);
export const StringPrototypeLastIndexOf = uncurry(String.prototype.lastIndexOf);
export const StringPrototypeRepeat = uncurry(String.prototype.repeat);
export const StringPrototypeReplaceAll = uncurry(String.prototype.replaceAll); // string patterns only
export const StringPrototypeSlice = uncurry(String.prototype.slice);
export const StringPrototypeSplit = uncurry(String.prototype.split); // string separators only
export const StringPrototypeStartsWith = uncurry(String.prototype.startsWith);
export const StringPrototypeToWellFormed = uncurry(String.prototype.toWellFormed);
export const StringPrototypeTrim = uncurry(String.prototype.trim);

// The built-in exec, called directly: RegExp.prototype.test, replace and split look `exec`
// up on the regular expression at each call, where a cell may have replaced it.
export const RegExpPrototypeExec = uncurry(RegExp.prototype.exec);
export function regExpTest(re, text) {
  return RegExpPrototypeExec(re, text) !== null;
}

export const MapPrototypeGet = uncurry(Map.prototype.get);
export const MapPrototypeSet = uncurry(Map.prototype.set);
export const MapPrototypeHas = uncurry(Map.prototype.has);
export const SetPrototypeAdd = uncurry(Set.prototype.add);
export const SetPrototypeHas = uncurry(Set.prototype.has);
export const SetPrototypeDelete = uncurry(Set.prototype.delete);
export const WeakSetPrototypeAdd = uncurry(WeakSet.prototype.add);
export const WeakSetPrototypeHas = uncurry(WeakSet.prototype.has);

export const PromisePrototypeThen = uncurry(Promise.prototype.then);
const promiseResolve = Promise.resolve;
export function PromiseResolve(value) {
  return ReflectApply(promiseResolve, PromiseCtor, [value]);
}
const promiseReject = Promise.reject;
export function PromiseReject(reason) {
  return ReflectApply(promiseReject, PromiseCtor, [reason]);
}

// JSON.stringify calls any `toJSON` it finds on an object's prototype chain, and both the
// worker's frames and Node's inspector session (its messages) are written with it: a cell
// that gives Object.prototype or Array.prototype a `toJSON` would change or break them
// all. `takeToJSON()` takes such a method off (returning what `putBack` restores) while
// the worker writes; checking costs two own-property lookups.
const TO_JSON_HOLDERS = [Object.prototype, Array.prototype];
export function takeToJSON() {
  let taken = null;
  for (let i = 0; i < TO_JSON_HOLDERS.length; i++) {
    const holder = TO_JSON_HOLDERS[i];
    if (!ObjectHasOwn(holder, 'toJSON')) continue;
    const d = ObjectGetOwnPropertyDescriptor(holder, 'toJSON');
    if (!d.configurable) continue; // made permanent by a cell: left so
    taken ??= [];
    taken[taken.length] = [holder, d];
    ReflectDeleteProperty(holder, 'toJSON');
  }
  return taken;
}

export function putBack(taken) {
  if (taken === null) return;
  for (let i = 0; i < taken.length; i++) ObjectDefineProperty(taken[i][0], 'toJSON', taken[i][1]);
}

export const BufferFrom = Buffer.from.bind(Buffer);
export const BufferIsEncoding = Buffer.isEncoding.bind(Buffer);
export const BufferPrototypeToString = uncurry(Buffer.prototype.toString);

// process's own functions, as they were (a cell may assign others).
export const {
  chdir: processChdir,
  cwd: processCwd,
  emit: processEmitMethod,
  env: processEnv,
  exit: processExit,
  listenerCount: processListenerCountMethod,
  nextTick: processNextTick,
  on: processOnMethod,
} = process;
export function processListenerCount(event, fn) {
  return ReflectApply(processListenerCountMethod, process, [event, fn]);
}
export function processEmit(...args) {
  return ReflectApply(processEmitMethod, process, args);
}
export function processOn(event, fn) {
  return ReflectApply(processOnMethod, process, [event, listener(fn)]);
}

// Node's type stripping (`module.stripTypeScriptTypes`, JavaScript glue around a wasm
// module, run in this realm) uses the realm's globals and built-ins as they are when it
// runs: `Reflect`, `Object.entries`, `String.prototype.charCodeAt`, `Function.prototype
// .apply`, typed arrays, DataView, TextDecoder... `withBuiltIns(fn)` runs `fn` with those of
// startup back in place, and afterwards restores what the cells had made of them. The check
// costs a few microseconds, paid only by cells that need the type stripping.
const GLOBAL_NAMES = [
  'Array', 'ArrayBuffer', 'BigInt', 'DataView', 'Error', 'Function', 'JSON', 'Map', 'Math',
  'Number', 'Object', 'Promise', 'Reflect', 'RegExp', 'Set', 'String', 'Symbol', 'TextDecoder',
  'TextEncoder', 'TypeError', 'Uint8Array', 'WeakMap', 'WebAssembly',
];
const TypedArray = Object.getPrototypeOf(Uint8Array);
const HOLDERS = [
  Object, Reflect, Symbol, JSON, WebAssembly, Function.prototype, String.prototype,
  Array.prototype, TypedArray.prototype, DataView.prototype, ArrayBuffer.prototype,
  TextDecoder.prototype, TextEncoder.prototype,
];
const builtIns = []; // [holder, key, descriptor at startup]
for (let i = 0; i < GLOBAL_NAMES.length; i++) {
  const name = GLOBAL_NAMES[i];
  builtIns[builtIns.length] = [globalThis, name, ObjectGetOwnPropertyDescriptor(globalThis, name)];
}
for (let h = 0; h < HOLDERS.length; h++) {
  const holder = HOLDERS[h];
  const keys = ReflectOwnKeys(holder);
  for (let k = 0; k < keys.length; k++) {
    const d = ObjectGetOwnPropertyDescriptor(holder, keys[k]);
    if (d.configurable && (typeof d.value === 'function' || d.get !== undefined)) {
      builtIns[builtIns.length] = [holder, keys[k], d];
    }
  }
}

function unchanged(holder, key, original) {
  if (original.get === undefined) {
    try {
      return holder[key] === original.value;
    } catch {
      return false; // a getter a cell put there
    }
  }
  const d = ObjectGetOwnPropertyDescriptor(holder, key);
  return d !== undefined && d.get === original.get;
}

export function withBuiltIns(fn) {
  let changed = null; // [holder, key, the cell's descriptor (undefined: absent)]
  for (let i = 0; i < builtIns.length; i++) {
    const entry = builtIns[i];
    if (unchanged(entry[0], entry[1], entry[2])) continue;
    const d = ObjectGetOwnPropertyDescriptor(entry[0], entry[1]);
    if (d !== undefined && !d.configurable) continue; // made permanent by a cell: left so
    changed ??= [];
    changed[changed.length] = [entry[0], entry[1], d];
    ObjectDefineProperty(entry[0], entry[1], entry[2]);
  }
  try {
    return fn();
  } finally {
    if (changed !== null) {
      for (let i = 0; i < changed.length; i++) {
        const undo = changed[i];
        if (undo[2] === undefined) ReflectDeleteProperty(undo[0], undo[1]);
        else ObjectDefineProperty(undo[0], undo[1], undo[2]);
      }
    }
  }
}
