// The io thread: the writer of all but the frames that end an execution (see main.mjs),
// and the reader of the worker's socket while an execution runs (the main thread reads it
// between executions, input.mjs). It runs in a worker_threads Worker started from this
// function's source, as CommonJS, so it must be self-contained: it uses nothing from
// outside its own body.
//
// Who reads the socket is in READER. The main thread hands the reading over as it starts
// an execution, by setting READER alone: waking this thread for every execution cost more
// than all the rest of its work. This thread looks at READER every LOOK_MS while
// executions come (and sleeps once none came for SLEEP_AFTER_MS: the main thread then wakes
// it with a message; asleep, it still looks every IDLE_LOOK_MS for a main thread stuck in
// code, and every DEEP_IDLE_LOOK_MS once none came for DEEP_SLEEP_AFTER_MS, as a timer's
// wake-up costs 0.1-0.4 ms of CPU on a virtual machine; a worker that has run nothing yet
// sleeps from its start and never looks), and starts its socket reading
// once an execution has run from one look to the next; so an execution shorter than that
// runs and ends without this thread waking, and an interrupt is read at most 2 * LOOK_MS
// after the execution started. The main thread takes the reading back after the
// execution's `done`: by itself, under READ_LOCK, if this thread's socket has not started
// reading (nothing was read, nothing can be); otherwise it asks, and this thread stops
// reading (between frames, never inside one) and hands it back with a message.

export function ioThread() {
  'use strict';
  const { parentPort, workerData } = require('node:worker_threads');
  const net = require('node:net');
  const fs = require('node:fs');
  const inspector = require('node:inspector');
  const S = new Int32Array(workerData.shared, 0, 10);
  const STARTED_AT = new Float64Array(workerData.shared, 40, 1);
  // the slots of output.mjs
  const PENDING = 0;
  const INTERRUPT = 1;
  const FINISHED = 2; // set by the main thread: every execution up to it has ended
  const STARTED = 3; // the last execution id given out (by either thread)
  const READER = 4;
  const READ_LOCK = 5;
  const IO_READING = 6;
  const IO_ASLEEP = 7;
  const MAIN_READS = 8;
  const WRITTEN = 9;
  const READER_MAIN = 0;
  const READER_IO = 1;
  const READER_YIELDED = 3;
  const LOOK_MS = 10;
  const IDLE_LOOK_MS = 100;
  const SLEEP_AFTER_MS = 2000;
  const DEEP_IDLE_LOOK_MS = 1000;
  const DEEP_SLEEP_AFTER_MS = 30000;

  // Connected only while an interrupt is in progress: a session left connected makes
  // Node print "Waiting for the debugger to disconnect..." at exit.
  let session = null;
  function terminateMain() {
    if (session === null) {
      session = new inspector.Session();
      session.connectToMainThread();
    }
    session.post('Runtime.terminateExecution', () => {});
  }
  function dropSession() {
    if (session !== null) {
      session.disconnect();
      session = null;
    }
  }

  // Read into one reused buffer (`onread`): Node's stream machinery (a Buffer per read,
  // pushed through a Readable) cost a fifth of this thread's CPU per warm execution.
  const sock = new net.Socket({
    fd: workerData.fd,
    readable: true,
    writable: true,
    manualStart: true, // it reads only in its turn (see the top)
    onread: { buffer: Buffer.allocUnsafe(64 * 1024), callback: onRead },
  });
  let eof = false;
  let interrupting = 0;

  function unfinished(id) {
    return id > Atomics.load(S, FINISHED) && id <= Atomics.load(S, STARTED);
  }
  // Its ending frames are not on their way yet (FINISHED may name it: they are being
  // written, and a termination that landed there cut them short).
  function unwritten(id) {
    return id > Atomics.load(S, WRITTEN) && id <= Atomics.load(S, STARTED);
  }

  // (held for microseconds; one held for a second was left by a holder cut short: input.mjs)
  function lock() {
    const deadline = Date.now() + 1000;
    while (Atomics.compareExchange(S, READ_LOCK, 0, 1) !== 0 && Date.now() < deadline) {
      Atomics.wait(S, READ_LOCK, 1, 1);
    }
  }
  function unlock() {
    Atomics.store(S, READ_LOCK, 0);
    Atomics.notify(S, READ_LOCK);
  }

  // Our turn to read (READER_IO): the socket starts reading, under the lock, so that the
  // main thread either sees IO_READING and asks for the reading back, or takes it back
  // before we start.
  let reading = false;
  function startReading() {
    if (reading || eof) return;
    lock();
    try {
      const reader = Atomics.load(S, READER);
      if (reader !== READER_IO && reader !== READER_YIELDED) return;
      reading = true;
      Atomics.store(S, IO_READING, 1);
      sock.resume();
    } finally {
      unlock();
    }
  }

  function stopReading() {
    if (!reading || have > 0) return;
    lock();
    try {
      sock.pause();
      reading = false;
      Atomics.store(S, IO_READING, 0);
    } finally {
      unlock();
    }
  }

  // Hand the reading back once no execution is left and no frame is cut in two; also when
  // this socket is not reading: the main thread may have asked while it was (`reader`),
  // and it waits for the answer.
  function maybeHandBack() {
    if (eof || have > 0) return;
    const reader = Atomics.load(S, READER);
    if (reader !== READER_IO && reader !== READER_YIELDED) return;
    if (Atomics.load(S, STARTED) !== Atomics.load(S, FINISHED)) return;
    if (reader === READER_YIELDED && mainThreadBusy()) return;
    lock();
    try {
      const now = Atomics.load(S, READER);
      if (now !== READER_IO && now !== READER_YIELDED) return; // the main thread took it
      if (reading) sock.pause(); // stops the reading at once (onread sockets: readStop)
      reading = false;
      Atomics.store(S, IO_READING, 0);
      Atomics.store(S, READER, READER_MAIN);
    } finally {
      unlock();
    }
    parentPort.postMessage({ op: 'reader' });
  }

  let lastActive = Date.now();
  let lastStarted = -1;
  let seenRunning = 0;
  let mainWasBusy = false;
  let mainReads = -1;
  let asking = false;
  function look() {
    const started = Atomics.load(S, STARTED);
    const reader = Atomics.load(S, READER);
    const first = Atomics.load(S, FINISHED) + 1;
    const running = unfinished(first) ? first : 0;
    // Read once the execution has run since the last look (or to finish a frame begun in
    // the bytes the main thread handed over): a short one ends before, and the main thread
    // takes the reading back without waiting for us. A reading the stuck main thread
    // yielded (input.mjs): at once.
    if (
      reader === READER_YIELDED ||
      (reader === READER_IO && (have > 0 || (running !== 0 && running === seenRunning)))
    ) {
      startReading();
    }
    seenRunning = running;
    // The main thread's turn, but from one look to the next it was not waiting in its
    // event loop and read nothing: it is stuck in code; it is asked to yield the reading
    // (input.mjs).
    if (reader === READER_MAIN && !eof) {
      const reads = Atomics.load(S, MAIN_READS);
      if (reads !== mainReads) {
        mainWasBusy = false; // it has read since the last look: not stuck
        mainReads = reads;
      } else {
        const busy = mainThreadBusy();
        if (busy && mainWasBusy && !asking) askForReading();
        mainWasBusy = busy;
      }
    } else {
      mainWasBusy = false;
    }
    maybeHandBack();
    forgetFinished();
    if (reader !== READER_MAIN || reading || started !== lastStarted || interrupting !== 0) {
      lastActive = Date.now();
      lastStarted = started;
      if (lookEvery !== LOOK_MS) lookAt(LOOK_MS);
    } else if (lookEvery === LOOK_MS && Date.now() - lastActive > SLEEP_AFTER_MS) {
      sleep(started);
    } else if (lookEvery === IDLE_LOOK_MS && Date.now() - lastActive > DEEP_SLEEP_AFTER_MS) {
      lookAt(DEEP_IDLE_LOOK_MS); // long idle: a stuck main thread is seen within 2 s
    }
  }
  let looking = null;
  let lookEvery = 0;
  function lookAt(ms) {
    if (looking !== null) clearInterval(looking);
    lookEvery = ms;
    looking = ms > 0 ? setInterval(look, ms) : null;
  }
  // Nothing for a while: look less often (only for a stuck main thread). The main thread
  // wakes us (a message) when it hands over next: it sees IO_ASLEEP, or we see its
  // READER_IO here. Before the first execution no user code has run and nothing can be
  // stuck: a worker waiting in the pool does not look at all.
  function sleep(started) {
    Atomics.store(S, IO_ASLEEP, 1);
    if (Atomics.load(S, READER) === READER_MAIN && Atomics.load(S, STARTED) === started) {
      lookAt(started === 0 ? 0 : IDLE_LOOK_MS);
      return true;
    }
    Atomics.store(S, IO_ASLEEP, 0);
    return false;
  }
  function wake() {
    Atomics.store(S, IO_ASLEEP, 0);
    lastActive = Date.now();
    if (lookEvery !== LOOK_MS) lookAt(LOOK_MS);
    look();
  }

  // A session of its own, for the time of one question: Runtime.evaluate runs on the main
  // thread between two steps of the code it is stuck in.
  function askForReading() {
    asking = true;
    const asked = new inspector.Session();
    asked.connectToMainThread();
    asked.post(
      'Runtime.evaluate',
      { expression: 'this.__cellbox_reading__()', silent: true },
      () => {
        asked.disconnect();
        asking = false;
        look();
      },
    );
  }

  function release(bytes) {
    Atomics.sub(S, PENDING, bytes);
    Atomics.notify(S, PENDING);
  }

  function onEof() {
    if (eof) return;
    eof = true;
    dropSession();
    Atomics.store(S, PENDING, 0);
    Atomics.notify(S, PENDING);
    parentPort.postMessage({ op: 'eof' });
    // The server is gone. If the main thread cannot exit by itself (stuck in user
    // code), do not linger.
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 2000).unref();
  }
  sock.on('end', onEof);
  sock.on('close', onEof);
  sock.on('error', onEof);

  // The start of a frame that is not whole yet, in copies (the read buffer is reused),
  // joined once it is whole.
  let chunks = [];
  let have = 0;
  function onRead(size, buf) {
    const started = Atomics.load(S, STARTED);
    take(buf.subarray(0, size));
    // A new execution (read here: the one before had not ended): stop reading until it has
    // run a while, as if the main thread had handed it over, so that a short one gives the
    // reading back to the main thread at its end (a reading kept through executions that
    // follow each other at once would never be given back).
    if (Atomics.load(S, STARTED) !== started) stopReading();
    else maybeHandBack();
  }
  function take(bytes) {
    let data = bytes;
    if (have > 0) {
      chunks.push(Buffer.from(data));
      have += data.length;
      if (have < 4) return;
      if (chunks[0].length < 4) chunks = [Buffer.concat(chunks, have)];
      if (have < 4 + chunks[0].readUInt32BE(0)) return;
      data = Buffer.concat(chunks, have);
      chunks = [];
      have = 0;
    }
    let at = 0;
    while (data.length - at >= 4) {
      const len = data.readUInt32BE(at);
      if (data.length - at < 4 + len) break;
      const payload = data.toString('utf8', at + 4, at + 4 + len);
      at += 4 + len;
      let msg;
      try {
        msg = JSON.parse(payload);
      } catch {
        continue;
      }
      onFrame(msg);
    }
    if (at < data.length) {
      chunks = [Buffer.from(data.subarray(at))];
      have = data.length - at;
    }
  }

  // Executions end in order; the main thread says which have ended through FINISHED and
  // WRITTEN (it may write their last frames itself, without a message to this thread).
  function forgetFinished() {
    if (interrupting !== 0 && !unwritten(interrupting)) {
      interrupting = 0;
      dropSession();
    }
  }

  function onFrame(msg) {
    if (!msg || typeof msg !== 'object') return;
    forgetFinished();
    if (msg.op === 'execute') {
      // (not expected while one runs: the server waits for `done`)
      const id = Atomics.add(S, STARTED, 1) + 1;
      STARTED_AT[0] = Date.now();
      const env = msg.env && typeof msg.env === 'object' ? msg.env : {};
      const code = typeof msg.code === 'string' ? msg.code : '';
      // `serverId`: the server's id of the execution, echoed on its frames (output.mjs)
      parentPort.postMessage({ op: 'execute', id, serverId: msg.id, code, env });
    } else if (msg.op === 'interrupt') {
      const first = Atomics.load(S, FINISHED) + 1;
      if (unfinished(first)) interrupt(first);
    } else if (msg.op === 'chdir') {
      parentPort.postMessage({ op: 'chdir', path: msg.path });
    }
  }

  // Not waiting in its event loop (epoll): running, or blocked in a system call.
  function mainThreadBusy() {
    try {
      const where = fs.readFileSync(`/proc/self/task/${process.pid}/wchan`, 'latin1');
      return !where.includes('epoll');
    } catch {
      return mainThreadState() === 'R';
    }
  }

  function mainThreadState() {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'latin1');
      return stat.charAt(stat.lastIndexOf(')') + 2);
    } catch {
      return '?';
    }
  }

  // The processes the main thread started during the execution, with their descendants.
  // A main thread blocked in a synchronous call that waits for a child (execSync,
  // spawnSync) can be stopped only once the child ends: an interrupt ends them as Ctrl-C
  // in a terminal would (SIGINT), so the call returns and the termination lands, and the
  // context keeps its state instead of being killed after its grace period. Children of
  // earlier executions (a server a cell started) are left alone.
  function childrenOf(pid, tid) {
    try {
      const text = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').trim();
      return text ? text.split(' ').map(Number) : [];
    } catch {
      return [];
    }
  }
  function descendants(pid, out) {
    let tasks = [];
    try {
      tasks = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    for (const tid of tasks) {
      for (const child of childrenOf(pid, tid)) {
        if (child > 0 && !out.includes(child)) {
          out.push(child);
          descendants(child, out);
        }
      }
    }
  }
  function startedSinceBoot(pid) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]) / 100; // starttime, in clock ticks (USER_HZ, 100 on Linux)
  }
  function interruptChildren(since) {
    try {
      const uptime = Number(fs.readFileSync('/proc/uptime', 'latin1').split(' ')[0]);
      const bootAt = Date.now() / 1000 - uptime;
      const targets = [];
      for (const child of childrenOf(process.pid, process.pid)) {
        try {
          // an earlier execution's (both clocks count in hundredths of a second here)
          if (bootAt + startedSinceBoot(child) < since / 1000 - 0.02) continue;
        } catch {
          continue; // gone already
        }
        targets.push(child);
        descendants(child, targets);
      }
      for (const pid of targets) {
        try {
          process.kill(pid, 'SIGINT');
        } catch {
          // gone already
        }
      }
    } catch {
      // no /proc: the server's grace period applies
    }
  }

  function interrupt(id) {
    Atomics.store(S, INTERRUPT, id);
    parentPort.postMessage({ op: 'interrupt', id });
    if (interrupting === id) return;
    interrupting = id;
    const started = Date.now();
    let lastTerminate = 0;
    let lastPost = started;
    let childrenInterrupted = false;
    const tick = () => {
      forgetFinished();
      if (!unwritten(id) || eof) {
        if (interrupting === id) {
          interrupting = 0;
          dropSession();
        }
        return;
      }
      // Its end is being written: no termination any more, only the message below, which
      // gets the end sent again if a termination cut its writing short.
      const ending = !unfinished(id);
      const now = Date.now();
      const state = mainThreadState();
      // 'R': the main thread is running (user JS). Anything else for a whole second
      // while not answering: blocked inside user code (sync sleep, Atomics.wait...).
      if (
        !ending &&
        (state === 'R' || state === '?' || now - started > 1000) &&
        now - lastTerminate >= 200
      ) {
        lastTerminate = now;
        terminateMain();
      }
      if (!ending && state !== 'R' && !childrenInterrupted && now - started >= 300) {
        // not answering, not running: maybe waiting for a child process
        childrenInterrupted = true;
        interruptChildren(Atomics.load(S, STARTED) === id ? STARTED_AT[0] : started);
      }
      if (now - lastPost >= 250) {
        lastPost = now;
        parentPort.postMessage({ op: 'interrupt', id });
      }
      setTimeout(tick, 20);
    };
    setTimeout(tick, 20);
  }

  // The frames to write come on a port of their own (the main thread posts them with the
  // MessagePort method it took at startup, see intrinsics.mjs).
  // `raw`: the rest of what the main thread began to write itself (output.mjs, writeEnd).
  // From the main thread, in order: frames to write; `wake` (it handed the reading over
  // while we slept), `bytes` (READER_HANDOFF: what it read past the request of the
  // execution it starts; the reading is ours once they are taken), `reader` (it wants the
  // reading back).
  workerData.frames.on('message', (m) => {
    if (m.op !== undefined) {
      if (m.op === 'wake') {
        wake();
      } else if (m.op === 'bytes') {
        take(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.length));
        Atomics.store(S, READER, m.yielded ? READER_YIELDED : READER_IO);
        wake();
      } else if (m.op === 'reader') {
        maybeHandBack();
      }
      return;
    }
    if (eof) {
      release(m.bytes);
    } else if (m.raw) {
      sock.write(m.raw, () => release(m.bytes));
    } else if (m.frames.length) {
      const parts = [];
      for (const text of m.frames) {
        const body = Buffer.from(text, 'utf8');
        const head = Buffer.allocUnsafe(4);
        head.writeUInt32BE(body.length, 0);
        parts.push(head, body);
      }
      sock.write(Buffer.concat(parts), () => release(m.bytes));
    }
    forgetFinished();
  });

  if (!sleep(0)) wake();
}
