// require() of packages whose `exports` offer only an "import" condition.
//
// Such a package has no entry for require()'s conditions, so Node's resolution fails with
// ERR_PACKAGE_PATH_NOT_EXPORTED, whoever calls require(): a cell, or a CommonJS package
// the cell loaded (at any depth). One synchronous resolve hook, registered for the whole
// worker process, retries exactly that failure with the conditions an import would use;
// the file it finds is an ES module, which require() then loads (Node's require(esm)).
// Every other resolution, successful or not, is Node's own: the hook only sees the error
// after Node's resolution has run and rethrows it untouched unless the retry succeeds.

import { registerHooks } from 'node:module';

import { ArrayPrototypeIncludes } from './intrinsics.mjs';

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

/** Registers the resolve hook for this process (once, at startup). */
export function installEsmHooks() {
  registerHooks({ resolve });
}
