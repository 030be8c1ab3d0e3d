// Top-level `using` and `await using` of a cell: what they hold is disposed when the cell
// ends, as a module's are when its body ends (V8 never disposes them in a REPL script).
// import_rewrite.mjs turns `using x = v` into `const x = v;__cellbox_using__.sync = x;`;
// the setter checks `x` as the declaration would and keeps it on the cell's scope
// (cell_scope.mjs). At the cell's end they are disposed last first, `await using` ones
// awaited, before the answer is sent: their output is the cell's. A disposal that throws
// fails a cell that succeeded (several: SuppressedError, as Node); if the cell failed
// itself, its error is the answer and the disposal's is told on stderr. An interrupted cell
// disposes nothing.

import { currentScope } from './cell_scope.mjs';
import { USING_HELPER } from './import_rewrite.mjs';
import {
  ArrayPrototypePop,
  ArrayPrototypePush,
  ObjectDefineProperty,
  PromisePrototypeThen,
  PromiseResolve,
  ReflectApply,
  TypeErrorCtor,
} from './intrinsics.mjs';
import { emitText } from './output.mjs';
import { errorFields } from './render.mjs';

const { dispose: SymbolDispose, asyncDispose: SymbolAsyncDispose } = Symbol;
const SuppressedErrorCtor = globalThis.SuppressedError;

function hold(value, isAsync) {
  if (value === null || value === undefined) return;
  if (typeof value !== 'object' && typeof value !== 'function') {
    throw new TypeErrorCtor('An object is expected with `using` declarations');
  }
  let method = isAsync ? value[SymbolAsyncDispose] : undefined;
  if (method === undefined || method === null) method = value[SymbolDispose];
  if (typeof method !== 'function') {
    throw new TypeErrorCtor('Symbol(Symbol.dispose) is not a function');
  }
  const scope = currentScope();
  if (scope === undefined) return;
  scope.held ??= [];
  ArrayPrototypePush(scope.held, { value, method, isAsync });
}

export function installUsing() {
  const helper = { __proto__: null };
  ObjectDefineProperty(helper, 'sync', { set: (value) => hold(value, false) });
  ObjectDefineProperty(helper, 'async', { set: (value) => hold(value, true) });
  ObjectDefineProperty(globalThis, USING_HELPER, {
    value: helper,
    writable: false,
    configurable: false,
    enumerable: false,
  });
}

function suppress(earlier, error) {
  if (earlier === null) return { error };
  const message = 'An error was suppressed during disposal';
  return { error: new SuppressedErrorCtor(error, earlier.error, message) };
}

/** Settles the execution `ex` with `outcome` once what its cell holds is disposed. */
export function disposeThenSettle(ex, outcome, settle) {
  const held = ex.scope.held;
  if (held === undefined || held.length === 0 || outcome.kind === 'interrupted') {
    settle(outcome);
    return;
  }
  let failure = null;
  const end = () => {
    if (failure === null) settle(outcome);
    else if (outcome.kind === 'value') settle({ kind: 'error', error: errorFields(failure.error) });
    else {
      emitText('stderr', `Uncaught ${errorFields(failure.error).traceback}\n`);
      settle(outcome);
    }
  };
  const next = () => {
    while (held.length) {
      const { value, method, isAsync } = ArrayPrototypePop(held);
      let result;
      try {
        result = ReflectApply(method, value, []);
      } catch (err) {
        failure = suppress(failure, err);
        continue;
      }
      if (isAsync) {
        PromisePrototypeThen(PromiseResolve(result), next, (err) => {
          failure = suppress(failure, err);
          next();
        });
        return;
      }
    }
    end();
  };
  next();
}
