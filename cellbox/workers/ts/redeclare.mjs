// A cell that declares a top-level name again with another kind of declaration: the forms
// of it that V8's REPL mode may accept. REPL mode lets a later cell declare a name again
// only with the same kind (let/class, const, var/function), so `const x` after `let x`
// is retried as `let x`, `let x` after `var`/`function x` as `var x`, and a class or
// function declaration as `let|var|const C = class C {...};`.
// Pure, on the tokens of tokenizer.mjs.

import { SetPrototypeHas, StringPrototypeSlice } from './intrinsics.mjs';
import { matchingClose, statementHeads, tokenize } from './tokenizer.mjs';

const BINDINGS = new Set(['let', 'const', 'var']);

// Does the declaration whose keyword is toks[k] declare `name`?
function declares(toks, k, name) {
  const t = toks[k];
  let nx = toks[k + 1];
  if (nx === undefined) return false;
  if (t.v === 'function' && nx.v === '*') nx = toks[k + 2];
  if (nx === undefined) return false;
  if (nx.k === 'n') return nx.v === name;
  if (SetPrototypeHas(BINDINGS, t.v) && (nx.v === '[' || nx.v === '{')) {
    // a destructuring pattern: any name in it (a property key too: harmless here)
    const close = matchingClose(toks, k + 1);
    for (let j = k + 2; j < close; j++) if (toks[j].k === 'n' && toks[j].v === name) return true;
  }
  return false;
}

// The one top-level declaration of `name` in the cell: {head, kw} token indices (kw
// differs from head for `async function`); null when none or more than one.
function declarationOf(toks, name) {
  let found = null;
  const heads = statementHeads(toks);
  for (let h = 0; h < heads.length; h++) {
    const head = heads[h];
    let kw = head;
    const next = toks[head + 1];
    if (toks[head].v === 'async' && next && next.v === 'function' && !next.nl) kw = head + 1;
    const t = toks[kw];
    if (t.k !== 'n' || !(SetPrototypeHas(BINDINGS, t.v) || t.v === 'class' || t.v === 'function')) continue;
    if (!declares(toks, kw, name)) continue;
    if (found !== null) return null; // declared twice in this cell: a real error
    found = { head, kw };
  }
  return found;
}

/** The versions of `code` to try, in order, when it fails with `name` already declared. */
export function redeclarationCandidates(code, name) {
  const toks = tokenize(code);
  const found = declarationOf(toks, name);
  if (found === null) return [];
  const t = toks[found.kw];
  const swap = (kw) => StringPrototypeSlice(code, 0, t.s) + kw + StringPrototypeSlice(code, t.e);
  if (t.v === 'const') return [swap('let'), swap('var')];
  if (t.v === 'let') return [swap('var'), swap('const')];
  if (t.v === 'var') return [swap('let'), swap('const')];
  // `class C ... { }` -> `let C = class C ... { };`, the same for a function
  let j = found.kw + 2;
  if (t.v === 'function') {
    if (toks[j] && toks[j].v !== '(') j++; // function* name
    if (toks[j] && toks[j].v === '(') j = matchingClose(toks, j) + 1;
    else return [];
  } else {
    while (j < toks.length && !(toks[j].v === '{' && toks[j].d === 0)) j++;
  }
  if (j <= 0 || j >= toks.length || toks[j].v !== '{') return [];
  const close = matchingClose(toks, j);
  if (close < 0) return [];
  const start = toks[found.head].s;
  const wrap = (kw) =>
    `${StringPrototypeSlice(code, 0, start)}${kw} ${name} = ${StringPrototypeSlice(code, start, toks[close].e)};${StringPrototypeSlice(code, toks[close].e)}`;
  return t.v === 'class' ? [wrap('var'), wrap('let'), wrap('const')] : [wrap('let'), wrap('const')];
}
