// One cell of the TypeScript worker, from its code to its outcome: the execution's env
// applied (and restored by main.mjs when it finishes), the code made into a REPL script,
// evaluated through the inspector (inspector.mjs), a redeclaration retried with another
// keyword, and the outcome handed back once: a value, an error (a compile error with the
// cell's line and caret) or an interruption. The protocol around it is main.mjs's.
//
// * TypeScript: `module.stripTypeScriptTypes` in "strip" mode (positions preserved, so
//   traceback lines/columns match the user's code); when the code uses syntax that
//   needs code generation (enum, namespace, parameter properties, `<T>x`), "transform"
//   mode, whose source map gives stack frames and compile errors the cell's own lines
//   and columns (source_maps.mjs). Code without any character or keyword that
//   TypeScript-only syntax needs (`1+1`, `f(x)`) skips the transform (~0.1 ms). Then
//   import_rewrite.mjs rewrites what a REPL script cannot contain: static `import`
//   declarations become `const ... = await import(...)`, `export` keywords are dropped,
//   and `import(...)` is routed through a helper (code evaluated through the inspector
//   has no module referrer, so Node's own dynamic import would fail). The tokenizer it works on
//   (tokenizer.mjs) also finds the cell's last statement: a result is reported only
//   when that statement is an expression (V8's completion value of `1; let x = 2` or of
//   `for (...) { x }` would otherwise leak out).
// * Results: the completion value is fetched with `Runtime.callFunctionOn` (so we hold
//   the real object, not a remote mirror) and rendered with util.inspect (no colours).
//   A native Promise as the last value is awaited, so `Promise.reject(e)` and
//   `import('node:os').then(...)` behave like their awaited forms.

import util from 'node:util';

import { newScope, runInScope } from './cell_scope.mjs';
import { disposeThenSettle } from './disposal.mjs';
import { rewrite } from './import_rewrite.mjs';
import {
  ArrayPrototypePop,
  ArrayPrototypeShift,
  AtomicsLoad,
  ObjectHasOwn,
  ObjectKeys,
  processEnv,
  PromisePrototypeThen,
  RegExpPrototypeExec,
  regExpTest,
  StringCtor,
  StringPrototypeIncludes,
  StringPrototypeRepeat,
  StringPrototypeSlice,
  StringPrototypeSplit,
  SyntaxErrorCtor,
} from './intrinsics.mjs';
import { releaseGroup, remoteValue, replEvaluate } from './inspector.mjs';
import { INTERRUPT, S } from './output.mjs';
import { errorFields, mimeBundle, plain } from './render.mjs';
import { redeclarationCandidates } from './redeclare.mjs';
import { originalPosition, rememberSourceMap } from './source_maps.mjs';
import { isNonExpressionStatement, statementHeads, tokenize } from './tokenizer.mjs';
import { syntaxErrorFromTs, toJavaScript, warmUpTypeScript } from './typescript.mjs';

// Runs a cell's path once at startup (without evaluating), so the first cell is not the
// one that compiles it.
export function warmUpCell() {
  warmUpTypeScript();
  const sample = 'import { a } from "m"\nexport const b = 1; for (;;) {}\nimport("x"); 1';
  const toks = tokenize(sample);
  rewrite(sample, toks);
  const heads = statementHeads(toks);
  isNonExpressionStatement(toks, heads[heads.length - 1]);
  errorFields(new Error('warm-up'));
  JSON.stringify({ type: 'result', bundle: mimeBundle({ a: [1] }) });
}

const { isPromise } = util.types;

// A new execution's record; `cell` numbers the cells of this worker (cell-1, cell-2, ...).
export function newExecution(id, cell) {
  return {
    __proto__: null, // a setter a cell puts on Object.prototype cannot catch its fields
    id,
    cell,
    envBackup: [], // [name, value before (undefined: unset)] of each variable it set
    finished: false,
    source: '',
    code: '', // the code compiled last (the user's, before typescript.mjs)
    map: null, // its source map when it needed generated code (source_maps.mjs)
    group: `cell-${id}`,
    scope: newScope(), // the code this cell runs, through its awaits and timers
  };
}

function applyEnv(ex, env) {
  const keys = ObjectKeys(env);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const had = ObjectHasOwn(processEnv, key);
    ex.envBackup[i] = [key, had ? processEnv[key] : undefined];
    processEnv[key] = StringCtor(env[key]);
  }
}

export function restoreEnv(ex) {
  const backup = ex.envBackup;
  for (let i = 0; i < backup.length; i++) {
    const key = backup[i][0];
    const value = backup[i][1];
    if (value === undefined) delete processEnv[key];
    else processEnv[key] = value;
  }
  ex.envBackup = [];
}

// Evaluates the cell of `msg` for the execution `ex`. Its outcome is handed to
// `settle(outcome)` (main.mjs's finish, which ignores all but the first); an answer that
// arrives once `isCurrent()` is false (the execution was ended by the protocol) is dropped.
export function runCell(ex, msg, settle, isCurrent) {
  ex.settle = (outcome) => disposeThenSettle(ex, outcome, settle);
  ex.isCurrent = isCurrent;
  try {
    applyEnv(ex, msg.env);
  } catch (err) {
    settle({ kind: 'error', error: errorFields(err) });
    return;
  }
  let js = null;
  if (regExpTest(OBJECT_LITERAL, msg.code)) {
    try {
      js = compile(ex, `(${msg.code})`);
      ex.asBlock = msg.code;
    } catch {
      js = null;
    }
  }
  if (js === null) {
    try {
      js = compile(ex, msg.code);
    } catch (err) {
      settle({ kind: 'error', error: syntaxErrorFromTs(err, `cell-${ex.cell}`) });
      return;
    }
  }
  evaluate(ex, js);
}

// A cell that is only `{ ... }` is an object literal, as in Node's REPL (`{ a: 1, b: 2 }`
// would not even compile as a block); it runs as a block when it does not compile as one.
const OBJECT_LITERAL = /^\s*\{[\s\S]*\}\s*$/;

// The REPL script for `code` (TypeScript removed, imports rewritten); throws a syntax error
// of the TypeScript transform.
function compile(ex, code) {
  const out = toJavaScript(code);
  let js = out.js;
  ex.transformed = out.transformed;
  ex.map = out.map;
  ex.code = code;
  ex.source = js;
  let toks = null;
  if (
    StringPrototypeIncludes(js, 'import') ||
    StringPrototypeIncludes(js, 'export') ||
    StringPrototypeIncludes(js, 'using')
  ) {
    toks = tokenize(js);
    js = rewrite(js, toks, ex.cell);
  }
  ex.toks = toks;
  return js;
}

function evaluate(ex, js) {
  ex.evaluated = js;
  if (ex.map) rememberSourceMap(`cell-${ex.cell}`, ex.map);
  runInScope(ex.scope, () =>
    replEvaluate(`${js}\n//# sourceURL=cell-${ex.cell}`, ex.group, (err, res, sync) =>
      onEvaluated(ex, err, res, sync),
    ),
  );
}

export function lastStatementIsExpression(ex) {
  try {
    const toks = ex.toks || tokenize(ex.source);
    const heads = statementHeads(toks);
    if (ex.transformed) {
      // The enum/namespace transform appends `var Name;` after the user's code.
      let stop = toks.length;
      while (heads.length > 1) {
        const h = heads[heads.length - 1];
        const size = stop - h;
        const trailingVar =
          (size === 2 || (size === 3 && toks[h + 2].v === ';')) &&
          toks[h].v === 'var' &&
          toks[h + 1].k === 'n';
        if (!trailingVar) break;
        ArrayPrototypePop(heads);
        stop = h;
      }
    }
    if (heads.length === 0) return true;
    return !isNonExpressionStatement(toks, heads[heads.length - 1]);
  } catch {
    return true;
  }
}

// A compile error for a top-level name declared before with another kind of declaration
// is retried with the forms of redeclare.mjs. Only compile errors are retried, so no code
// has run. Returns the next code or null.
function redeclaration(ex, message) {
  const m = RegExpPrototypeExec(ALREADY_DECLARED, StringCtor(message));
  if (!m || (ex.retries = (ex.retries ?? 0) + 1) > 16) return null;
  if (ex.retryName !== m[1] || !ex.candidates) {
    ex.retryName = m[1];
    ex.candidates = redeclarationCandidates(ex.evaluated, m[1]);
  }
  return ex.candidates.length ? ArrayPrototypeShift(ex.candidates) : null;
}
const ALREADY_DECLARED = /^Identifier '([^']+)' has already been declared$/;
// V8 stops at a decorator's '@' (Node's type stripping leaves decorators in): JavaScript has
// no other '@' outside strings, comments and regular expressions.
const DECORATOR = /^@[\p{ID_Start}$_(]/u;
const DECORATORS_UNSUPPORTED =
  'Decorators are not supported: Node, which runs the cells, supports neither ' +
  "TypeScript's experimental decorators nor standard (TC39) decorators. Call the decorator " +
  'function yourself instead';

function syntaxErrorFromDetails(ex, details, thrown) {
  const fields = errorFields(thrown);
  const lines = StringPrototypeSplit(ex.evaluated, '\n');
  let line = details.lineNumber ?? 0;
  let column = details.columnNumber ?? 0;
  if (line >= lines.length) {
    // "Unexpected end of input" points into the appended sourceURL comment.
    line = lines.length - 1;
    column = lines[line].length;
  }
  let sourceLine = lines[line];
  if (
    fields.value === 'Invalid or unexpected token' &&
    regExpTest(DECORATOR, StringPrototypeSlice(sourceLine, column))
  ) {
    fields.value = DECORATORS_UNSUPPORTED;
  }
  const at = ex.map ? originalPosition(`cell-${ex.cell}`, line + 1, column + 1) : null;
  if (at !== null) {
    // generated code (typescript.mjs): the cell's own line
    line = at.line - 1;
    column = at.column - 1;
    sourceLine = StringPrototypeSplit(ex.code, '\n')[line];
  }
  let where = `cell-${ex.cell}:${line + 1}`;
  if (sourceLine !== undefined) where += `\n${sourceLine}\n${StringPrototypeRepeat(' ', column)}^`;
  fields.traceback = plain(`${where}\n\n${fields.name}: ${fields.value}`);
  return fields;
}

function onEvaluated(ex, err, res, sync) {
  if (!ex.isCurrent() || ex.finished) {
    releaseGroup(ex.group);
    return;
  }
  if (err || !res) {
    if (AtomicsLoad(S, INTERRUPT) === ex.id) ex.settle({ kind: 'interrupted' });
    else {
      const value = plain(err ? err.message : 'no result');
      ex.settle({
        kind: 'error',
        error: { name: 'InternalError', value, traceback: `InternalError: ${value}` },
      });
    }
    return;
  }
  try {
    if (res.exceptionDetails) {
      const details = res.exceptionDetails;
      const thrown = details.exception ? remoteValue(details.exception) : undefined;
      let error;
      if (details.exception === undefined) {
        error = { name: 'Error', value: plain(details.text), traceback: plain(details.text) };
      } else if (sync && thrown instanceof SyntaxErrorCtor && ex.asBlock !== undefined) {
        // Not an object literal after all: the cell as it is.
        const code = ex.asBlock;
        ex.asBlock = undefined;
        try {
          evaluate(ex, compile(ex, code));
        } catch (err) {
          ex.settle({ kind: 'error', error: syntaxErrorFromTs(err, `cell-${ex.cell}`) });
        }
        return;
      } else if (sync && thrown instanceof SyntaxErrorCtor) {
        // A compile error (answered before anything ran).
        const retry = redeclaration(ex, thrown.message);
        if (retry !== null) {
          ex.firstError ??= syntaxErrorFromDetails(ex, details, thrown);
          evaluate(ex, retry);
          return;
        }
        error = ex.firstError ?? syntaxErrorFromDetails(ex, details, thrown);
      } else {
        error = errorFields(thrown);
      }
      ex.settle({ kind: 'error', error });
      return;
    }
    const value = remoteValue(res.result);
    if (isPromise(value)) {
      PromisePrototypeThen(
        value,
        (settled) => ex.settle({ kind: 'value', value: settled }),
        (reason) => ex.settle({ kind: 'error', error: errorFields(reason) }),
      );
      return;
    }
    ex.settle({ kind: 'value', value });
  } catch (failure) {
    ex.settle({ kind: 'error', error: errorFields(failure) });
  }
}
