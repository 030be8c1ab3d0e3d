// The user's lines and columns in cells whose TypeScript needed code generation (enum,
// namespace, parameter properties: typescript.mjs's "transform" mode). That transform
// prints the cell anew (blank lines dropped, statements split), so V8's positions are the
// printed code's. The source map it makes of each such cell is kept here, and the stack
// frames (render.mjs) and compile errors (cell.mjs) of those cells are told in the cell's
// own positions. Cells that need no generated code have no map and cost nothing here.

import { SourceMap } from 'node:module';

import {
  BufferFrom,
  BufferPrototypeToString,
  JSONParse,
  MapCtor,
  MapPrototypeGet,
  MapPrototypeSet,
  ReflectApply,
  StringCtor,
  StringPrototypeLastIndexOf,
  StringPrototypeReplaceAll,
  StringPrototypeSlice,
} from './intrinsics.mjs';

const MAP_COMMENT = '\n//# sourceMappingURL=data:application/json;base64,';

/** The code and the base64 source map of a transform's output (map null when none). */
export function splitSourceMap(output) {
  const at = StringPrototypeLastIndexOf(output, MAP_COMMENT);
  if (at < 0) return { js: output, map: null };
  return {
    js: StringPrototypeSlice(output, 0, at + 1),
    map: StringPrototypeSlice(output, at + MAP_COMMENT.length),
  };
}

const maps = new MapCtor(); // script name (cell-N) -> base64 map, then its SourceMap
let any = false;

/** Keeps the map of the script `name` (a cell's sourceURL) for as long as the worker runs. */
export function rememberSourceMap(name, base64) {
  MapPrototypeSet(maps, name, base64);
  any = true;
}

function sourceMapOf(name) {
  if (!any) return undefined;
  let map = MapPrototypeGet(maps, name);
  if (typeof map === 'string') {
    try {
      const json = BufferPrototypeToString(BufferFrom(map, 'base64'), 'utf8');
      map = new SourceMap(JSONParse(json));
    } catch {
      map = null;
    }
    MapPrototypeSet(maps, name, map);
  }
  return map ?? undefined;
}

/** The cell's own {line, column} (1-based) of a position in script `name`, or null. */
export function originalPosition(name, line, column) {
  const map = sourceMapOf(name);
  if (map === undefined || typeof line !== 'number' || typeof column !== 'number') return null;
  let entry;
  try {
    entry = map.findEntry(line - 1, column - 1);
  } catch {
    return null;
  }
  if (entry === undefined || typeof entry.originalLine !== 'number') return null;
  return { line: entry.originalLine + 1, column: entry.originalColumn + 1 };
}

// A stack frame told in the cell's own position: Node's stack formatting reads a frame
// through its methods and its text, which say the mapped line and column; the other
// methods are the frame's own.
const FRAME_METHODS = [
  'getThis', 'getTypeName', 'getFunction', 'getFunctionName', 'getMethodName', 'getFileName',
  'getEvalOrigin', 'isToplevel', 'isEval', 'isNative', 'isConstructor', 'isAsync',
  'isPromiseAll', 'getPromiseIndex', 'getScriptNameOrSourceURL', 'getScriptHash',
  'getEnclosingColumnNumber', 'getEnclosingLineNumber', 'getPosition',
];

function mappedFrame(frame, name, line, column, at) {
  const shown = { __proto__: null };
  for (let i = 0; i < FRAME_METHODS.length; i++) {
    const method = FRAME_METHODS[i];
    shown[method] = () => ReflectApply(frame[method], frame, []);
  }
  shown.getLineNumber = () => at.line;
  shown.getColumnNumber = () => at.column;
  shown.toString = () =>
    StringPrototypeReplaceAll(
      StringCtor(frame),
      `${name}:${line}:${column}`,
      `${name}:${at.line}:${at.column}`,
    );
  return shown;
}

/** A stack frame, in its cell's own position when the cell has a map. */
export function userPositionFrame(frame) {
  if (!any) return frame;
  try {
    const file = frame.getScriptNameOrSourceURL(); // a cell's is its sourceURL, cell-N
    if (typeof file !== 'string' || sourceMapOf(file) === undefined) return frame;
    const line = frame.getLineNumber();
    const column = frame.getColumnNumber();
    const at = originalPosition(file, line, column);
    return at === null ? frame : mappedFrame(frame, file, line, column, at);
  } catch {
    return frame;
  }
}
