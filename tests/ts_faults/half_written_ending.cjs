// Preloaded into a TypeScript worker by tests/test_typescript_termination.py (node
// --require): the main thread's write of an execution's ending frames to the server's
// socket (output.mjs, writeEnd) is taken only in part, as Linux takes a write to a stream
// socket that needs more than one buffer when the socket's buffer is nearly full, and an
// interrupt's termination lands right after it. Only writes longer than one such buffer
// (32 KiB) are cut: Linux takes a shorter one whole or not at all.
'use strict';
const fs = require('node:fs');
const terminateNow = require('./terminate_now.cjs');
const { isMainThread } = require('node:worker_threads');

const ONE_BUFFER = 32 * 1024;
const at = process.argv.indexOf('--fd');
const socketFd = at >= 0 ? Number(process.argv[at + 1]) : -1;
if (isMainThread && socketFd >= 0) {
  const writeSync = fs.writeSync;
  let fired = false;
  fs.writeSync = function takeHalfThenTerminate(fd, buffer, ...rest) {
    if (fired || fd !== socketFd || rest.length > 0 || !(buffer.length > ONE_BUFFER)) {
      return Reflect.apply(writeSync, this, [fd, buffer, ...rest]);
    }
    fired = true;
    const written = Reflect.apply(writeSync, this, [fd, buffer.subarray(0, buffer.length >> 1)]);
    terminateNow();
    return written;
  };
}
