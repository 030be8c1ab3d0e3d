// What user code finds in its global scope beyond Node's: display(), a require() and
// dynamic import() that resolve from the working directory (with packages that export
// only for import, see esm_hooks.mjs), the timers of timers.mjs and the standard input of
// stdin.mjs.

import { createRequire, isBuiltin } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { installChildOutput } from './child_output.mjs';
import { emitFdBytes } from './console.mjs';
import { installUsing } from './disposal.mjs';
import { installEsmHooks } from './esm_hooks.mjs';
import { installFdOutput } from './fd_output.mjs';
import { IMPORT_HELPER } from './import_rewrite.mjs';
import {
  ArrayIsArray,
  ErrorCtor,
  MapCtor,
  MapPrototypeGet,
  MapPrototypeSet,
  ObjectAssign,
  ObjectDefineProperty,
  ObjectKeys,
  PromisePrototypeThen,
  processCwd,
  regExpTest,
  StringCtor,
  StringPrototypeReplaceAll,
  StringPrototypeSplit,
  StringPrototypeStartsWith,
  StringPrototypeTrim,
} from './intrinsics.mjs';
import { enqueue } from './output.mjs';
import { mimeBundle } from './render.mjs';
import { installStdin } from './stdin.mjs';
import { installTimers } from './timers.mjs';

// The module that calls import() for a cell: Node names it in errors.
const IMPORTER_FILE = fileURLToPath(import.meta.url);

function display(...values) {
  for (let i = 0; i < values.length; i++) {
    const bundle = mimeBundle(values[i]);
    const keys = ObjectKeys(bundle);
    let size = 64;
    for (let k = 0; k < keys.length; k++) {
      const item = bundle[keys[k]];
      size += typeof item === 'string' ? item.length : 64;
    }
    enqueue({ type: 'display', bundle }, size);
  }
}

// Cells resolve modules as if they were a file in the working directory.
const cellParent = () => path.join(processCwd(), '[cellbox]');
let requireCwd = null;
let requireFn = null;
function currentRequire() {
  const cwd = processCwd();
  if (cwd !== requireCwd) {
    requireFn = createRequire(cellParent());
    requireCwd = cwd;
  }
  return requireFn;
}

// require() of an ES module works (Node's require(esm); esm_hooks.mjs finds packages that
// export only for import) unless the module's graph has top-level await. When the module
// the cell asked for is that ES module, the error names what works instead. When the
// failing require() is a package's own, Node's error stands: it names both files, and
// import() of the package would fail the same way.
function userRequire(id) {
  try {
    return currentRequire()(id);
  } catch (err) {
    if (err?.code !== 'ERR_REQUIRE_ASYNC_MODULE' || !requiredByCell(err)) throw err;
    const file = currentRequire().resolve(id);
    const message =
      `require('${id}') cannot load ${file}: it is an ES module whose graph uses ` +
      `top-level await, which require() cannot wait for; use \`await import('${id}')\``;
    throw ObjectAssign(new ErrorCtor(message, { cause: err }), { code: err.code });
  }
}

// Node's message has a line naming the requiring module ("From <file>"): here, the cell's.
function requiredByCell(err) {
  const from = `From ${cellParent()}`;
  const lines = StringPrototypeSplit(StringCtor(err.message), '\n');
  for (let i = 0; i < lines.length; i++) if (StringPrototypeTrim(lines[i]) === from) return true;
  return false;
}
userRequire.resolve = (request, options) => currentRequire().resolve(request, options);
userRequire.resolve.paths = (request) => currentRequire().resolve.paths(request);
userRequire.cache = currentRequire().cache;

// A static import's names of a CommonJS module: Node exports the names its static analysis
// finds in the module's code (none for `module.exports = lib` with `lib.chunk = ...`,
// lodash's shape); the others are read off the exports object, as TypeScript's CommonJS
// output, Deno and bundlers do. ES modules and built-ins keep their own exports.
function withCommonJsNames(namespace, names) {
  if (!('module.exports' in namespace)) return namespace;
  const exported = namespace['module.exports'];
  const view = { __proto__: null };
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    if (name in namespace) view[name] = namespace[name];
    else if (exported !== null && exported !== undefined) view[name] = exported[name];
  }
  return view;
}

// What a cell's import of `spec` loads: a file URL, a URL or a built-in's name.
function importTarget(spec) {
  if (
    spec === '.' ||
    spec === '..' ||
    StringPrototypeStartsWith(spec, './') ||
    StringPrototypeStartsWith(spec, '../') ||
    path.isAbsolute(spec)
  ) {
    return pathToFileURL(path.resolve(processCwd(), spec)).href;
  }
  if (!regExpTest(URL_SCHEME, spec) && !isBuiltin(spec)) {
    // A bare package name: resolve it from the working directory.
    try {
      return pathToFileURL(userRequire.resolve(spec)).href;
    } catch {
      return spec;
    }
  }
  return spec;
}

// `import.meta` of cell `cell` (import_rewrite.mjs): that of a module file `cell-N` in the
// working directory where the cell first asked for it, run as the entry point (`main`: a
// cell is the program, as `__name__ == "__main__"` in a Python context).
const metas = new MapCtor();
function cellMeta(cell) {
  let meta = MapPrototypeGet(metas, cell);
  if (meta === undefined) {
    const dirname = processCwd();
    const filename = path.join(dirname, `cell-${cell}`);
    meta = {
      dirname,
      filename,
      main: true,
      resolve: (specifier) => importTarget(StringCtor(specifier)),
      url: pathToFileURL(filename).href,
    };
    MapPrototypeSet(metas, cell, meta);
  }
  return meta;
}

// `import(specifier, options)` of a cell; `names` are those of a static import.
function cellImport(specifier, options, names) {
  const target = importTarget(StringCtor(specifier));
  let loading = options === undefined ? import(target) : import(target, options);
  if (ArrayIsArray(names)) {
    loading = PromisePrototypeThen(loading, (namespace) => withCommonJsNames(namespace, names));
  }
  return PromisePrototypeThen(loading, undefined, (err) => {
    // Node names the importing module: that is this worker, not the user's cell.
    const cwd = processCwd();
    const cwdUrl = pathToFileURL(path.join(cwd, '/')).href;
    for (let i = 0; i < ERROR_TEXTS.length; i++) {
      const key = ERROR_TEXTS[i];
      try {
        if (typeof err[key] === 'string') {
          const named = StringPrototypeReplaceAll(err[key], import.meta.url, cwdUrl);
          err[key] = StringPrototypeReplaceAll(named, IMPORTER_FILE, cwd);
        }
      } catch {
        // a frozen or exotic error: leave it
      }
    }
    throw err;
  });
}
const URL_SCHEME = /^[a-z][a-z0-9+.-]*:/i;
const ERROR_TEXTS = ['message', 'stack'];

export function installGlobals() {
  installEsmHooks();
  const hidden = (value) => ({ value, writable: true, configurable: true, enumerable: false });
  ObjectDefineProperty(globalThis, 'display', hidden(display));
  ObjectDefineProperty(globalThis, 'require', hidden(userRequire));
  ObjectDefineProperty(cellImport, 'meta', { value: cellMeta });
  ObjectDefineProperty(globalThis, IMPORT_HELPER, {
    value: cellImport,
    writable: false,
    configurable: false,
    enumerable: false,
  });
  installTimers();
  installStdin();
  installChildOutput();
  installFdOutput(emitFdBytes, true);
  installUsing();
}
