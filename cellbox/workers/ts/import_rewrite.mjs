// The rewrite of what a REPL script cannot contain: static `import` declarations become
// `const ... = await import(...)`, `export` keywords are dropped, and `import(...)` is
// routed through a helper (code evaluated through the inspector has no module referrer).
// Pure, on the tokens of tokenizer.mjs: tested on its own by tokenizer.test.mjs.

import { matchingClose, parseImport, statementHeads } from './tokenizer.mjs';

export const IMPORT_HELPER = '__cellbox_import__';

// `import ... from "m"` at the top level -> an edit turning it into an awaited import().
function importEdit(src, toks, hi) {
  const parsed = parseImport(toks, hi);
  if (!parsed) return null;
  const { def, ns, spec, attrs } = parsed;
  const start = toks[hi].s;
  const end = toks[parsed.next - 1].e;
  const attrText = attrs ? `, { with: ${src.slice(attrs[0].s, attrs[1].e)} }` : '';
  const call = `await ${IMPORT_HELPER}(${src.slice(spec.s, spec.e)}${attrText})`;
  let text;
  if (ns !== null) {
    text = `const ${ns} = ${call}${def !== null ? `, ${def} = ${ns}.default` : ''};`;
  } else if (parsed.named !== null) {
    const parts = parsed.named.map(({ item, local }) => {
      const imported = item.k === 'str' ? src.slice(item.s, item.e) : item.v;
      return local === null || local === imported ? imported : `${imported}: ${local}`;
    });
    if (def !== null) parts.unshift(`default: ${def}`);
    text = `const { ${parts.join(', ')} } = ${call};`;
  } else if (def !== null) {
    text = `const ${def} = (${call}).default;`;
  } else {
    text = `${call};`;
  }
  const lines = src.slice(start, end).split('\n').length - 1;
  return { s: start, e: end, text: text + '\n'.repeat(lines) };
}

function blank(src, s, e) {
  return src.slice(s, e).replace(/[^\n]/g, ' ');
}

// Rewrites for a REPL script: static imports, exports, dynamic import().
export function rewrite(src, toks) {
  const edits = [];
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i];
    if (t.k !== 'n') continue;
    if (t.v === 'import') {
      const nx = toks[i + 1];
      const pv = toks[i - 1];
      if (nx && nx.v === '(' && !(pv && (pv.v === '.' || pv.v === '?.'))) {
        edits.push({ s: t.s, e: t.e, text: IMPORT_HELPER });
      }
    }
  }
  for (const hi of statementHeads(toks)) {
    const t = toks[hi];
    if (t.k !== 'n') continue;
    if (t.v === 'import') {
      const nx = toks[hi + 1];
      if (nx && (nx.v === '(' || nx.v === '.')) continue;
      const edit = importEdit(src, toks, hi);
      if (edit) edits.push(edit);
    } else if (t.v === 'export') {
      const nx = toks[hi + 1];
      if (!nx) continue;
      if (nx.v === 'default') {
        edits.push({ s: t.s, e: nx.e, text: blank(src, t.s, nx.e) });
      } else if (nx.v === '{' || nx.v === '*') {
        let j = hi + 1;
        if (nx.v === '{') j = matchingClose(toks, hi + 1);
        if (j < 0) continue;
        j++;
        while (j < toks.length && toks[j].k !== 'str' && toks[j].v !== ';' && !toks[j].nl) j++;
        if (j < toks.length && toks[j].k === 'str') j++;
        if (j < toks.length && toks[j].v === ';') j++;
        const end = toks[j - 1].e;
        edits.push({ s: t.s, e: end, text: blank(src, t.s, end) });
      } else {
        edits.push({ s: t.s, e: t.e, text: blank(src, t.s, t.e) });
      }
    }
  }
  if (edits.length === 0) return src;
  edits.sort((a, b) => a.s - b.s);
  let out = '';
  let pos = 0;
  for (const edit of edits) {
    if (edit.s < pos) continue;
    out += src.slice(pos, edit.s) + edit.text;
    pos = edit.e;
  }
  return out + src.slice(pos);
}
