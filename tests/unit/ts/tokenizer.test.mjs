// The TypeScript worker's tokenizer and import rewrite (run by tests/unit/test_ts_tokenizer.py).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { IMPORT_HELPER, rewrite } from '../../../cellbox/workers/ts/import_rewrite.mjs';
import { isNonExpressionStatement, statementHeads, tokenize } from '../../../cellbox/workers/ts/tokenizer.mjs';

const kinds = (src) => tokenize(src).map((t) => t.k).join(',');
const lastIsExpression = (src) => {
  const toks = tokenize(src);
  return !isNonExpressionStatement(toks, statementHeads(toks).at(-1));
};
const rewritten = (src) => rewrite(src, tokenize(src));

test('static imports become awaited dynamic imports through the helper', () => {
  assert.equal(
    rewritten('import { a, b as c } from "m"'),
    `const { a, b: c } = await ${IMPORT_HELPER}("m", undefined, ['a', 'b']);`,
  );
  assert.equal(
    rewritten('import x from "y"; import * as ns from "z"'),
    `const x = (await ${IMPORT_HELPER}("y")).default; const ns = await ${IMPORT_HELPER}("z");`,
  );
  assert.equal(rewritten('const m = await import("q")'), `const m = await ${IMPORT_HELPER}("q")`);
  assert.equal(
    rewritten('import d, { "x-y" as xy } from "m" with { type: "json" }'),
    `const { default: d, "x-y": xy } = await ${IMPORT_HELPER}("m", { with: { type: "json" } }, ['default', "x-y"]);`,
  );
});

test('import.meta becomes the meta of the cell from the helper', () => {
  const src = 'const u = import.meta.url; o.import.meta; import.meta';
  assert.equal(
    rewrite(src, tokenize(src), 7),
    `const u = ${IMPORT_HELPER}.meta(7).url; o.import.meta; ${IMPORT_HELPER}.meta(7)`,
  );
});

test('a top-level using declaration hands what it holds to the helper after it', () => {
  assert.equal(
    rewritten('using a = f(1, 2), b = g; x'),
    'const a = f(1, 2), b = g;__cellbox_using__.sync = a;__cellbox_using__.sync = b;; x',
  );
  assert.equal(
    rewritten('await using  c = h() // c\nd'),
    'const        c = h();__cellbox_using__.async = c; // c\nd',
  );
  for (const src of ['{ using z = w }', 'using = 2; using\nx = 1', 'f(using, x)']) {
    assert.equal(rewritten(src), src);
  }
  assert.equal(lastIsExpression('using x = y'), false);
  assert.equal(lastIsExpression('await using x = y'), false);
  assert.equal(lastIsExpression('using + 1'), true);
});

test('export keywords are blanked, keeping positions', () => {
  const src = 'export const d = 1;';
  const out = rewritten(src);
  assert.equal(out.length, src.length);
  assert.equal(out.trim(), 'const d = 1;');
});

test('an export list is blanked up to its own end', () => {
  assert.equal(rewritten('export {}\n"next"'), '         \n"next"');
  assert.equal(rewritten("export { a }\n'b'; c"), "            \n'b'; c");
  assert.equal(rewritten('export { a } from "m"; b').trim(), 'b');
  assert.equal(rewritten('export * as ns from "m"\nb').trim(), 'b');
});

test('code without imports is left as it is', () => {
  for (const src of ['let x = 1; x + 1', 'a.import = 2', '"import x from y"']) {
    assert.equal(rewritten(src), src);
  }
});

test('regular expressions, division and templates are told apart', () => {
  assert.equal(kinds('const r = /a\\/b/g; a / b / c'), 'n,n,p,re,p,n,p,n,p,n');
  assert.equal(kinds('`${1 + `${2}`}` + 1'), 'tpl,num,p,tpl,num,tpl,tpl,p,num');
  assert.equal(kinds("'it''s' 0x1f 1_000n .5e3"), 'str,str,num,num,num');
});

test('statements are found at the top level only', () => {
  assert.equal(statementHeads(tokenize('let x = 1; x + 1')).length, 2);
  assert.equal(statementHeads(tokenize('if (a) { b; c } else { d }')).length, 1);
  assert.equal(statementHeads(tokenize('x = {a: 1}\n;[1].map(f)')).length, 2);
});

test('the last statement decides whether a cell has a result', () => {
  assert.equal(lastIsExpression('let x = 1; x + 1'), true);
  assert.equal(lastIsExpression('1; let y = 2'), false);
  assert.equal(lastIsExpression('for (;;) {}'), false);
  assert.equal(lastIsExpression('if (a) { b } else { c }'), false);
  assert.equal(lastIsExpression('function f() {}'), false);
  assert.equal(lastIsExpression('await f()'), true);
});
