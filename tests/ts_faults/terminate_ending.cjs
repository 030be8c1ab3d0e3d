// Preloaded into a TypeScript worker by tests/test_typescript_termination.py (node
// --require): an interrupt's termination that lands in the instant where the main thread
// has marked an execution finished (output.mjs stores its id in FINISHED, slot 2 of the
// shared array) and has not written its ending frames yet. Which execution:
// CELLBOX_TEST_TERMINATE_ENDING_OF (the worker's own count of executions, from 1).
'use strict';
const { isMainThread } = require('node:worker_threads');
const terminateNow = require('./terminate_now.cjs');

const target = Number(process.env.CELLBOX_TEST_TERMINATE_ENDING_OF);
if (isMainThread && target > 0) {
  const store = Atomics.store;
  let fired = false;
  Atomics.store = function storeThenTerminate(array, index, value) {
    const stored = store(array, index, value);
    if (!fired && index === 2 && value === target && array.length === 10) {
      fired = true;
      terminateNow();
    }
    return stored;
  };
}
