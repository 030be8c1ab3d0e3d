// TypeScript to JavaScript: Node's own type stripping, positions kept where possible.

import { stripTypeScriptTypes } from 'node:module';

import {
  regExpTest,
  withBuiltIns,
  StringCtor,
  StringPrototypeIndexOf,
  StringPrototypeSlice,
  StringPrototypeStartsWith,
} from './intrinsics.mjs';
import { plain } from './render.mjs';
import { splitSourceMap } from './source_maps.mjs';

export function syntaxErrorFromTs(err, cellName) {
  const message = plain(err && err.message ? err.message : StringCtor(err));
  let traceback = `SyntaxError: ${message}`;
  const stack = err && typeof err.stack === 'string' ? err.stack : '';
  const cut = StringPrototypeIndexOf(stack, '\n\nSyntaxError');
  if (cut > 0 && StringPrototypeStartsWith(stack, ':')) {
    traceback = `${cellName}${plain(StringPrototypeSlice(stack, 0, cut))}\n\n${traceback}`;
  }
  return { name: 'SyntaxError', value: message, traceback };
}

// Every TypeScript-only construct needs one of these (`import x = require("m")` its `=`);
// code without any is plain JavaScript that stripping would return unchanged, so the
// transform is skipped.
const MAYBE_TYPESCRIPT =
  /[:<!?@]|\b(?:as|enum|interface|type|namespace|module|declare|abstract|implements|private|public|protected|readonly|satisfies|override|accessor|keyof|infer|asserts|unique|is)\b|\bimport\s+[$\w]+\s*=/;

// JavaScript for a cell, or a .ts file it imports (esm_hooks.mjs); `transformed` when code
// had to be generated (positions moved, `map` the base64 source map back to the code's own;
// see source_maps.mjs).
export function toJavaScript(code) {
  if (!regExpTest(MAYBE_TYPESCRIPT, code)) return { js: code, transformed: false, map: null };
  return withBuiltIns(() => {
    try {
      return { js: stripTypeScriptTypes(code, STRIP), transformed: false, map: null };
    } catch (err) {
      if (err && err.code === UNSUPPORTED) {
        const out = splitSourceMap(stripTypeScriptTypes(code, TRANSFORM));
        return { js: out.js, transformed: true, map: out.map };
      }
      throw err;
    }
  });
}
export const UNSUPPORTED = 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX';
const STRIP = { mode: 'strip' };
const TRANSFORM = { mode: 'transform', sourceMap: true };


// The first transform loads a wasm module (~50 ms): pay it before `ready`, and swallow the
// one-time ExperimentalWarning it emits.
export function warmUpTypeScript() {
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    stripTypeScriptTypes('let a: number = 1', { mode: 'strip' });
    stripTypeScriptTypes('enum E { A }', TRANSFORM);
  } finally {
    process.emitWarning = emitWarning;
  }
}
