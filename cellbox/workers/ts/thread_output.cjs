// Preloaded into each worker_threads Worker of a cell (fd_output.mjs): its fs writes to fds
// 1 and 2 become writes of its process.stdout/stderr, which Node pipes into the main
// thread's, where they are the execution's output.
'use strict';

const { Buffer } = require('node:buffer');

require('./fd_output.mjs').installFdOutput((fd, bytes) => {
  // a copy: the thread's stream may send it after the caller changed its buffer
  (fd === 1 ? process.stdout : process.stderr).write(Buffer.from(bytes));
}, false);
