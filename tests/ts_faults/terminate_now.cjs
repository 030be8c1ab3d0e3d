// The termination an interrupt asks for (io_thread.mjs: Runtime.terminateExecution), asked
// for by the main thread itself: it lands at the next point where V8 checks for interrupts.
'use strict';
const inspector = require('node:inspector');

module.exports = function terminateNow() {
  const session = new inspector.Session();
  session.connect();
  session.post('Runtime.terminateExecution');
  session.disconnect();
};
