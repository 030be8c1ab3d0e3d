// Output written to fds 1 and 2 through `fs` rather than process.stdout/stderr:
// fs.writeSync(1, ...), fs.write(process.stderr.fd, ...), writev, writeFileSync(1, ...),
// appendFile(2, ...), fs.createWriteStream(null, { fd: 1 }), and files opened on
// /dev/stdout or /dev/stderr (fs.writeFileSync('/dev/stdout', ...), createWriteStream,
// fs.promises.writeFile and appendFile).
// The worker's own fds 1 and 2 are not the execution's output (the server discards fd 1 and
// keeps fd 2 to tell why a worker died), so that output was lost. Such a write becomes the
// process.stdout/stderr write of the same bytes (console.mjs), in order with console.log as
// in Node, where both write synchronously; written while no execution runs, it is held for
// the next one like any other output (output.mjs).
// The call itself is made on /dev/null, so arguments are checked, and the call returns,
// throws and calls back, as Node's own does. Closing fd 1 or 2 does nothing: a later open
// would take the number, and its file's writes would be taken for output.
// worker_threads have an fs of their own: each Worker is started with thread_output.cjs
// preloaded (`--require` in its execArgv), which does the same there, the thread's
// process.stdout/stderr (which Node pipes into this thread's) writing the bytes.
// Not caught: writes of native code or child processes of their own (children given the
// worker's stdio: child_output.mjs), and fs.promises file handles (fs.promises.open).

import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { fileURLToPath } from 'node:url';
import workerThreads from 'node:worker_threads';

import {
  ArrayIsArray,
  ArrayPrototypePush,
  ArrayPrototypeSlice,
  BufferFrom,
  MapCtor,
  MapPrototypeGet,
  MapPrototypeSet,
  processNextTick,
  ReflectApply,
  Uint8ArrayCtor,
} from './intrinsics.mjs';

const NAMED = new MapCtor([
  ['/dev/stdout', 1],
  ['/dev/stderr', 2],
  ['/dev/fd/1', 1],
  ['/dev/fd/2', 2],
  ['/proc/self/fd/1', 1],
  ['/proc/self/fd/2', 2],
]);
const opened = new MapCtor(); // fd of a file opened on /dev/null for a NAMED path -> 1 or 2
let openedCount = 0;
const MapPrototypeDelete = MapCtor.prototype.delete;
const { openSync, closeSync } = fs;
let devNull = -1;
let emitFdBytes = null; // (1 or 2, bytes): tells bytes written to fd 1 or 2

function nullFd() {
  if (devNull < 0) devNull = openSync('/dev/null', 'w');
  return devNull;
}

// 1 or 2 if writing to `fd` is output, else 0.
function outputOf(fd) {
  if (fd === 1 || fd === 2) return fd;
  if (typeof fd !== 'number' || openedCount === 0) return 0;
  return MapPrototypeGet(opened, fd) ?? 0;
}

// 1 or 2 if `path` names the output (/dev/stdout...), else 0.
function namedPath(path) {
  return typeof path === 'string' ? (MapPrototypeGet(NAMED, path) ?? 0) : 0;
}

// For writeFile/appendFile: a path or an fd.
function namedOutput(file) {
  return typeof file === 'string' ? namedPath(file) : outputOf(file);
}

function viewBytes(view, offset, length) {
  return new Uint8ArrayCtor(view.buffer, view.byteOffset + offset, length);
}

// What write/writeSync(fd, data, a, b) writes: (string, position, encoding),
// (view, offset, length, position) or (view, { offset, length }).
function writtenBytes(data, a, b) {
  if (typeof data === 'string') return BufferFrom(data, typeof b === 'string' ? b : 'utf8');
  let offset = typeof a === 'function' ? undefined : a; // fs.write(fd, buffer, callback)
  let length = typeof b === 'function' ? undefined : b;
  if (a !== null && typeof a === 'object') {
    offset = a.offset;
    length = a.length;
  }
  offset ??= 0;
  if (typeof length !== 'number') length = data.byteLength - offset;
  return viewBytes(data, offset, length);
}

// What writeFile/appendFile(file, data, options) writes.
function fileBytes(data, options) {
  if (typeof data === 'string') {
    const encoding = typeof options === 'string' ? options : options?.encoding;
    return BufferFrom(data, typeof encoding === 'string' ? encoding : 'utf8');
  }
  return viewBytes(data, 0, data.byteLength);
}

// `original` made on /dev/null when its first argument is output, whose bytes are then
// told: the views `bytesOf(args)` lists.
function wrapWrite(original, output, bytesOf, nullFile = nullFd) {
  return {
    [original.name](...args) {
      const to = output(args[0]);
      if (to === 0) return ReflectApply(original, this, args);
      args[0] = nullFile();
      const result = ReflectApply(original, this, args);
      let views;
      try {
        views = bytesOf(args);
      } catch {
        return result; // data the call refused (fs.promises rejects rather than throws)
      }
      for (let i = 0; i < views.length; i++) emitFdBytes(to, views[i]);
      return result;
    },
  }[original.name];
}
const written = (args) => [writtenBytes(args[1], args[2], args[3])];
const filed = (args) => [fileBytes(args[1], args[2])];
function writtenv(args) {
  const buffers = args[1];
  const views = [];
  for (let i = 0; i < buffers.length; i++) {
    views[i] = viewBytes(buffers[i], 0, buffers[i].byteLength);
  }
  return views;
}

function wrapOpen(original, sync) {
  return {
    [original.name](...args) {
      const to = namedPath(args[0]);
      if (to === 0) return ReflectApply(original, this, args);
      args[0] = '/dev/null';
      if (sync) {
        const fd = ReflectApply(original, this, args);
        MapPrototypeSet(opened, fd, to);
        openedCount++;
        return fd;
      }
      const last = args.length - 1;
      const callback = args[last];
      if (typeof callback === 'function') {
        args[last] = (err, fd) => {
          if (!err) {
            MapPrototypeSet(opened, fd, to);
            openedCount++;
          }
          callback(err, fd);
        };
      }
      return ReflectApply(original, this, args);
    },
  }[original.name];
}

function wrapClose(original, sync) {
  return {
    [original.name](...args) {
      const fd = args[0];
      if (fd === 1 || fd === 2 || (fd === devNull && fd >= 0)) {
        if (!sync && typeof args[1] === 'function') processNextTick(args[1], null);
        return undefined;
      }
      if (openedCount !== 0 && ReflectApply(MapPrototypeDelete, opened, [fd])) openedCount--;
      return ReflectApply(original, this, args);
    },
  }[original.name];
}

// Workers run with thread_output.cjs preloaded (their own execArgv: the worker's, a V8
// option, is refused in a Worker's).
const PRELOAD = fileURLToPath(new URL('./thread_output.cjs', import.meta.url));
function installThreadOutput() {
  const Original = workerThreads.Worker;
  workerThreads.Worker = class Worker extends Original {
    constructor(filename, options) {
      const execArgv = options?.execArgv;
      const given = ArrayIsArray(execArgv) ? ArrayPrototypeSlice(execArgv) : [];
      ArrayPrototypePush(given, '--require', PRELOAD);
      super(filename, { ...options, execArgv: given });
    }
  };
}

/** fs writes to fds 1 and 2 become `emit(fd, bytes)`; `threads`: Workers' too. */
export function installFdOutput(emit, threads) {
  emitFdBytes = emit;
  if (threads) installThreadOutput();
  fs.writeSync = wrapWrite(fs.writeSync, outputOf, written);
  fs.write = wrapWrite(fs.write, outputOf, written);
  fs.writevSync = wrapWrite(fs.writevSync, outputOf, writtenv);
  fs.writev = wrapWrite(fs.writev, outputOf, writtenv);
  fs.writeFileSync = wrapWrite(fs.writeFileSync, namedOutput, filed);
  fs.writeFile = wrapWrite(fs.writeFile, namedOutput, filed);
  fs.appendFileSync = wrapWrite(fs.appendFileSync, namedOutput, filed);
  fs.appendFile = wrapWrite(fs.appendFile, namedOutput, filed);
  const { promises } = fs;
  const nullPath = () => '/dev/null';
  promises.writeFile = wrapWrite(promises.writeFile, namedPath, filed, nullPath);
  promises.appendFile = wrapWrite(promises.appendFile, namedPath, filed, nullPath);
  fs.openSync = wrapOpen(openSync, true);
  fs.open = wrapOpen(fs.open, false);
  fs.closeSync = wrapClose(closeSync, true);
  fs.close = wrapClose(fs.close, false);
  syncBuiltinESMExports();
}
