// The rewrite of what a REPL script cannot contain: static `import` declarations become
// `const ... = await import(...)`, `export` keywords are dropped, and `import(...)` and
// `import.meta` are routed through a helper (code evaluated through the inspector has no
// module referrer).
// Pure, on the tokens of tokenizer.mjs: tested on its own by tokenizer.test.mjs.

import {
  ArrayPrototypeJoin,
  ArrayPrototypePush,
  ArrayPrototypeSort,
  StringPrototypeRepeat,
  StringPrototypeSlice,
  StringPrototypeSplit,
} from './intrinsics.mjs';
import { matchingClose, parseImport, statementHeads, usingDeclaration } from './tokenizer.mjs';

export const IMPORT_HELPER = '__cellbox_import__';
export const USING_HELPER = '__cellbox_using__';

// A top-level `using x = v` (or `await using`) of a REPL script is never disposed (V8 takes
// it for a lexical declaration of the script): it becomes `const x = v;H.sync = x;`, whose
// setter (disposal.mjs) takes `x` for the cell's end. The keyword keeps its length (`await
// using` is padded) and the rest goes after the statement, so positions stay.
function usingEdits(toks, hi, end, edits) {
  const first = usingDeclaration(toks, hi);
  if (first < 0) return;
  const head = toks[hi];
  const keyword = toks[first - 1];
  const pad = StringPrototypeRepeat(' ', keyword.e - head.s - 5);
  ArrayPrototypePush(edits, { s: head.s, e: keyword.e, text: `const${pad}` });
  const setter = `${USING_HELPER}.${head !== keyword ? 'async' : 'sync'} = `;
  let held = ';';
  let expectName = true;
  let last = first;
  for (let j = first; j < end; j++) {
    const t = toks[j];
    if (t.d === 0 && t.k === 'p' && t.v === ';') break;
    last = j;
    if (t.d !== 0) continue;
    if (t.k === 'p' && t.v === ',') {
      expectName = true;
    } else if (expectName && t.k === 'n' && toks[j + 1] && toks[j + 1].v === '=') {
      held += `${setter}${t.v};`;
      expectName = false;
    } else {
      expectName = false;
    }
  }
  ArrayPrototypePush(edits, { s: toks[last].e, e: toks[last].e, text: held });
}

// `import ... from "m"` at the top level -> an edit turning it into an awaited import().
function importEdit(src, toks, hi) {
  const parsed = parseImport(toks, hi);
  if (!parsed) return null;
  const { def, ns, spec, attrs } = parsed;
  const start = toks[hi].s;
  const end = toks[parsed.next - 1].e;
  const attrObject = attrs ? `{ with: ${StringPrototypeSlice(src, attrs[0].s, attrs[1].e)} }` : null;
  const specText = StringPrototypeSlice(src, spec.s, spec.e);
  const call = `await ${IMPORT_HELPER}(${specText}${attrObject ? `, ${attrObject}` : ''})`;
  let text;
  if (ns !== null) {
    text = `const ${ns} = ${call}${def !== null ? `, ${def} = ${ns}.default` : ''};`;
  } else if (parsed.named !== null) {
    const parts = def !== null ? [`default: ${def}`] : [];
    const names = def !== null ? ["'default'"] : [];
    for (let i = 0; i < parsed.named.length; i++) {
      const { item, local } = parsed.named[i];
      const imported = item.k === 'str' ? StringPrototypeSlice(src, item.s, item.e) : item.v;
      ArrayPrototypePush(
        parts,
        local === null || local === imported ? imported : `${imported}: ${local}`,
      );
      ArrayPrototypePush(names, item.k === 'str' ? imported : `'${imported}'`);
    }
    // The helper gets the names too: a CommonJS module's are read off its exports object.
    const named = `await ${IMPORT_HELPER}(${specText}, ${attrObject ?? 'undefined'}, [${ArrayPrototypeJoin(names, ', ')}])`;
    text = `const { ${ArrayPrototypeJoin(parts, ', ')} } = ${named};`;
  } else if (def !== null) {
    text = `const ${def} = (${call}).default;`;
  } else {
    text = `${call};`;
  }
  const lines = StringPrototypeSplit(StringPrototypeSlice(src, start, end), '\n').length - 1;
  return { s: start, e: end, text: text + StringPrototypeRepeat('\n', lines) };
}

// The text from s to e as spaces, its line breaks kept.
function blank(src, s, e) {
  const lines = StringPrototypeSplit(StringPrototypeSlice(src, s, e), '\n');
  for (let i = 0; i < lines.length; i++) lines[i] = StringPrototypeRepeat(' ', lines[i].length);
  return ArrayPrototypeJoin(lines, '\n');
}

// Rewrites for a REPL script of cell number `cell`: static imports, exports, dynamic
// import(), import.meta (the helper's `meta(cell)`, see globals.mjs), top-level `using`.
export function rewrite(src, toks, cell = 0) {
  const edits = [];
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i];
    if (t.k !== 'n') continue;
    if (t.v === 'import') {
      const nx = toks[i + 1];
      const pv = toks[i - 1];
      if (pv && (pv.v === '.' || pv.v === '?.')) continue;
      if (nx && nx.v === '(') {
        ArrayPrototypePush(edits, { s: t.s, e: t.e, text: IMPORT_HELPER });
      } else if (nx && nx.v === '.' && toks[i + 2] && toks[i + 2].v === 'meta') {
        const text = `${IMPORT_HELPER}.meta(${cell})`;
        ArrayPrototypePush(edits, { s: t.s, e: toks[i + 2].e, text });
      }
    }
  }
  const heads = statementHeads(toks);
  for (let h = 0; h < heads.length; h++) {
    const hi = heads[h];
    const t = toks[hi];
    if (t.k !== 'n') continue;
    if (t.v === 'using' || t.v === 'await') {
      usingEdits(toks, hi, h + 1 < heads.length ? heads[h + 1] : toks.length, edits);
    } else if (t.v === 'import') {
      const nx = toks[hi + 1];
      if (nx && (nx.v === '(' || nx.v === '.')) continue;
      const edit = importEdit(src, toks, hi);
      if (edit) ArrayPrototypePush(edits, edit);
    } else if (t.v === 'export') {
      const nx = toks[hi + 1];
      if (!nx) continue;
      if (nx.v === 'default') {
        ArrayPrototypePush(edits, { s: t.s, e: nx.e, text: blank(src, t.s, nx.e) });
      } else if (nx.v === '{' || nx.v === '*') {
        let j = hi + 1;
        if (nx.v === '{') j = matchingClose(toks, hi + 1);
        if (j < 0) continue;
        j++;
        while (j < toks.length && toks[j].k !== 'str' && toks[j].v !== ';' && !toks[j].nl) j++;
        if (j < toks.length && toks[j].k === 'str' && toks[j - 1].v === 'from') j++;
        if (j < toks.length && toks[j].v === ';') j++;
        const end = toks[j - 1].e;
        ArrayPrototypePush(edits, { s: t.s, e: end, text: blank(src, t.s, end) });
      } else {
        ArrayPrototypePush(edits, { s: t.s, e: t.e, text: blank(src, t.s, t.e) });
      }
    }
  }
  if (edits.length === 0) return src;
  ArrayPrototypeSort(edits, (a, b) => a.s - b.s);
  let out = '';
  let pos = 0;
  for (let i = 0; i < edits.length; i++) {
    const edit = edits[i];
    if (edit.s < pos) continue;
    out += StringPrototypeSlice(src, pos, edit.s) + edit.text;
    pos = edit.e;
  }
  return out + StringPrototypeSlice(src, pos);
}
