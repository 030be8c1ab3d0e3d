// Module hooks for the worker process: require() of packages whose `exports` offer only an
// "import" condition, and imported .ts files that need generated code.
//
// An import-only package has no entry for require()'s conditions, so Node's resolution fails with
// ERR_PACKAGE_PATH_NOT_EXPORTED, whoever calls require(): a cell, or a CommonJS package
// the cell loaded (at any depth). One synchronous resolve hook, registered for the whole
// worker process, retries exactly that failure with the conditions an import would use;
// the file it finds is an ES module, which require() then loads (Node's require(esm)).
// Every other resolution, successful or not, is Node's own: the hook only sees the error
// after Node's resolution has run and rethrows it untouched unless the retry succeeds.

// An imported .ts file (the user's, not a package's) is made JavaScript as a cell is
// (typescript.mjs): its types stripped, or, when it holds an enum, a namespace or parameter
// properties, which Node's type stripping refuses (ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX),
// through Node's transform, its source map kept so that its stack frames tell the file's
// own lines (source_maps.mjs). Node's global source maps stay off: with them, every package
// shipping a map would cost its parsed map in memory at load. Every other file is loaded
// by Node alone.

import { readFileSync } from 'node:fs';
import { findPackageJSON, registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';
import { compileFunction } from 'node:vm';

import {
  ArrayPrototypeIncludes,
  BufferPrototypeToString,
  JSONParse,
  SetCtor,
  SetPrototypeHas,
  StringPrototypeEndsWith,
  StringPrototypeIncludes,
  StringPrototypeStartsWith,
  SyntaxErrorCtor,
} from './intrinsics.mjs';
import { rememberSourceMap } from './source_maps.mjs';
import { toJavaScript, UNSUPPORTED } from './typescript.mjs';

const NOT_EXPORTED = 'ERR_PACKAGE_PATH_NOT_EXPORTED';

/** require()'s resolution conditions with "require" replaced by "import". */
function importConditions(conditions) {
  const replaced = [];
  for (let i = 0; i < conditions.length; i++) {
    replaced[i] = conditions[i] === 'require' ? 'import' : conditions[i];
  }
  return replaced;
}

function resolve(specifier, context, nextResolve) {
  try {
    return nextResolve(specifier, context);
  } catch (err) {
    const conditions = context.conditions ?? [];
    if (err?.code !== NOT_EXPORTED || !ArrayPrototypeIncludes(conditions, 'require')) throw err;
    try {
      return nextResolve(specifier, { ...context, conditions: importConditions(conditions) });
    } catch {
      // Not exported for import either (a missing subpath): require's error says so.
      throw err;
    }
  }
}

const TYPESCRIPT_FORMATS = new SetCtor(['typescript', 'module-typescript', 'commonjs-typescript']);

function load(url, context, nextLoad) {
  let result;
  try {
    result = nextLoad(url, context);
  } catch (err) {
    // A .ts file whose format Node could not tell: it strips the types to look.
    if (err?.code !== UNSUPPORTED || !isOwnFile(url)) throw err;
    const code = readFileSync(fileURLToPath(url), 'utf8');
    const loaded = asJavaScript(url, context.format, code);
    if (loaded === null) throw err;
    return loaded;
  }
  const format = result.format; // require() says 'typescript', import its kind of it
  if (!SetPrototypeHas(TYPESCRIPT_FORMATS, format) || !isOwnFile(url)) return result;
  // Node strips the types after this hook: here instead, so that code it would refuse is
  // transformed. Code that is no TypeScript at all is left to Node, whose error names the
  // file.
  const source = result.source;
  const code = typeof source === 'string' ? source : BufferPrototypeToString(source, 'utf8');
  return asJavaScript(url, format, code) ?? result;
}

/** A file's own TypeScript (a package's is Node's to refuse: it strips none under
 * node_modules). */
function isOwnFile(url) {
  return StringPrototypeStartsWith(url, 'file:') && !StringPrototypeIncludes(url, '/node_modules/');
}

/** The load result of TypeScript file `url`: JavaScript made as a cell's is (null if the
 * code is not valid TypeScript). */
function asJavaScript(url, known, code) {
  let converted;
  try {
    converted = toJavaScript(code);
  } catch {
    return null;
  }
  const { js, map } = converted;
  if (map !== null) {
    rememberSourceMap(url, map); // an ES module's frames name its URL,
    rememberSourceMap(fileURLToPath(url), map); // a CommonJS module's its path
  }
  return { format: formatOf(url, known, js), source: js, shortCircuit: true };
}

/** 'module' or 'commonjs', as Node decides for a TypeScript file: by its extension, its
 * package's "type", else by its syntax (import/export or top-level await: a module). */
function formatOf(url, known, js) {
  if (known === 'module-typescript' || StringPrototypeEndsWith(url, '.mts')) return 'module';
  if (known === 'commonjs-typescript' || StringPrototypeEndsWith(url, '.cts')) return 'commonjs';
  let type;
  try {
    const found = findPackageJSON(url);
    if (found !== undefined) type = JSONParse(readFileSync(found, 'utf8'))?.type;
  } catch {
    type = undefined; // unreadable: as if it said nothing
  }
  if (type === 'module' || type === 'commonjs') return type;
  try {
    compileFunction(js, ['exports', 'require', 'module', '__filename', '__dirname']);
    return 'commonjs';
  } catch (err) {
    return err instanceof SyntaxErrorCtor ? 'module' : 'commonjs';
  }
}

/** Registers the hooks for this process (once, at startup). */
export function installEsmHooks() {
  registerHooks({ resolve, load });
}
