// The io thread: the reader of the worker's socket and the writer of all but the frames
// that end an execution (see main.mjs). It runs in a
// worker_threads Worker started from this function's source, as CommonJS, so it must be
// self-contained: it uses nothing from outside its own body.

export function ioThread() {
  'use strict';
  const { parentPort, workerData } = require('node:worker_threads');
  const net = require('node:net');
  const fs = require('node:fs');
  const inspector = require('node:inspector');
  const S = new Int32Array(workerData.shared);
  const PENDING = 0;
  const INTERRUPT = 1;
  const FINISHED = 2; // set by the main thread: every execution up to it has ended

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
    onread: { buffer: Buffer.allocUnsafe(64 * 1024), callback: onRead },
  });
  let eof = false;
  let seq = 0;
  const unfinished = [];
  let interrupting = 0;
  const startedAt = new Map(); // execution id -> Date.now() when it was handed on

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
    let data = buf.subarray(0, size);
    if (have > 0) {
      chunks.push(Buffer.from(data));
      have += size;
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

  // Executions end in order; the main thread says which have ended through FINISHED (it
  // may write their last frames itself, without a message to this thread).
  function forgetFinished() {
    const upTo = Atomics.load(S, FINISHED);
    while (unfinished.length && unfinished[0] <= upTo) {
      const id = unfinished.shift();
      startedAt.delete(id);
      if (interrupting === id) {
        interrupting = 0;
        dropSession();
      }
    }
  }

  function onFrame(msg) {
    if (!msg || typeof msg !== 'object') return;
    forgetFinished();
    if (msg.op === 'execute') {
      const id = ++seq;
      unfinished.push(id);
      startedAt.set(id, Date.now());
      const env = msg.env && typeof msg.env === 'object' ? msg.env : {};
      const code = typeof msg.code === 'string' ? msg.code : '';
      // `serverId`: the server's id of the execution, echoed on its frames (output.mjs)
      parentPort.postMessage({ op: 'execute', id, serverId: msg.id, code, env });
    } else if (msg.op === 'interrupt') {
      if (unfinished.length) interrupt(unfinished[0]);
    } else if (msg.op === 'chdir') {
      parentPort.postMessage({ op: 'chdir', path: msg.path });
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
      if (!unfinished.includes(id) || eof) {
        if (interrupting === id) {
          interrupting = 0;
          dropSession();
        }
        return;
      }
      const now = Date.now();
      const state = mainThreadState();
      // 'R': the main thread is running (user JS). Anything else for a whole second
      // while not answering: blocked inside user code (sync sleep, Atomics.wait...).
      if ((state === 'R' || state === '?' || now - started > 1000) && now - lastTerminate >= 200) {
        lastTerminate = now;
        terminateMain();
      }
      if (state !== 'R' && !childrenInterrupted && now - started >= 300) {
        // not answering, not running: maybe waiting for a child process
        childrenInterrupted = true;
        interruptChildren(startedAt.get(id) ?? started);
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
  workerData.frames.on('message', (m) => {
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
}
