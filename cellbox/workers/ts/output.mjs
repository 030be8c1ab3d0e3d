// Everything the worker sends, in order: frames are queued here and posted to the io
// thread (io_thread.mjs), which writes them to the socket. The frames that end an
// execution are written by this thread itself when the io thread has nothing left to
// write (see writeEnd): the answer then reaches the server without waking the io thread.
// Output of one stream is
// coalesced; it is sent at once when nothing was sent for FLUSH_AGE_MS, else on
// setImmediate, past FLUSH_CHARS, and before `done`. Output produced while no execution
// runs is held (up to IDLE_CAP) for the next one. The main thread waits (Atomics) while
// more than OUT_LIMIT characters are posted but not yet written.

import fs from 'node:fs';
import { MessageChannel, MessagePort, Worker } from 'node:worker_threads';

import {
  ArrayPrototypePush,
  AtomicsAdd,
  AtomicsLoad,
  AtomicsStore,
  AtomicsWait,
  BufferFrom,
  DateNow,
  JSONStringify,
  listener,
  NumberIsInteger,
  PromisePrototypeThen,
  PromiseResolve,
  process,
  processExit,
  putBack,
  ReflectApply,
  StringPrototypeSlice,
  StringPrototypeToWellFormed,
  takeToJSON,
  TypedArrayPrototypeSet,
  TypedArrayPrototypeSubarray,
  Uint8ArrayCtor,
} from './intrinsics.mjs';
import { ioThread } from './io_thread.mjs';

const shared = new SharedArrayBuffer(48);
export const S = new Int32Array(shared, 0, 10);
export const PENDING = 0;
export const INTERRUPT = 1;
export const FINISHED = 2; // the last execution whose `done` is sent (or on its way)
// The reading of the socket (input.mjs, io_thread.mjs): the last execution id given out,
// by whichever thread read its request; who reads (READER_*); a lock the io thread holds
// while it reads and that the main thread takes to read again; whether the io thread's
// socket is reading; whether the io thread has stopped looking at READER (it sleeps).
export const STARTED = 3;
export const READER = 4;
export const READ_LOCK = 5;
export const IO_READING = 6;
export const IO_ASLEEP = 7;
export const MAIN_READS = 8; // counts the main thread's reads (it is not stuck)
// The last execution whose ending frames are on their way (written, or posted to the io
// thread): set after FINISHED, once nothing can cut them short any more (io_thread.mjs).
// Executions end in order: every id up to it has its `done`.
export const WRITTEN = 9;
export const READER_MAIN = 0;
export const READER_IO = 1;
export const READER_HANDOFF = 2; // bytes the main thread read are on their way to the io thread
export const READER_YIELDED = 3; // the io thread's, while the main thread is stuck (input.mjs)
// Date.now() when the execution STARTED was given out (io_thread.mjs, interruptChildren)
export const STARTED_AT = new Float64Array(shared, 40, 1);
const OUT_LIMIT = 1 << 20; // characters posted to the io thread but not yet written
const FLUSH_CHARS = 64 * 1024;
const FLUSH_AGE_MS = 50;
const IDLE_CAP = 1 << 20;
// What Linux's unix_stream_sendmsg puts in one buffer at least (with a send buffer of
// 64 KiB or more): a write to the server's socket up to this long is taken whole or not
// at all (writeEnd).
const ONE_SOCKET_BUFFER = 32 * 1024;
export const EXIT_IO_FAILED = 70; // cellbox/exit_codes.py INTERNAL_ERROR

const realStderr = process.stderr;
const realStderrWriteMethod = realStderr.write;
// Node's own, taken before timers.mjs replaces the global with the user's timers.
const { setImmediate } = globalThis;
const now = performance.now.bind(performance);
export function realStderrWrite(text) {
  try {
    ReflectApply(realStderrWriteMethod, realStderr, [text]);
  } catch {
    // nothing left to report to
  }
}
const postToPort = MessagePort.prototype.postMessage;
const fsWriteSync = fs.writeSync; // before fd_output.mjs wraps it, out of the cells' reach
function portPost(port, message) {
  ReflectApply(postToPort, port, [message]);
}

let io = null;
let toIo = null; // our end of the channel the io thread reads frames to write from
let socketFd = -1;
let queue = []; // frames, in order; stdout/stderr chunks of the same stream coalesced
let queuedChars = 0;
let lastFlushAt = 0;
let flushScheduled = false;
let idleDropped = 0;
let exiting = false;
let running = false; // an execution is running: output flows
// The server's id of the execution being answered: every frame sent carries it (see
// cellbox/protocol.py); `ready` and `chdir` answers, sent before any, carry 0.
let executionTail = ',"id":0}'; // last, so frames still begin with their type

// Start the io thread on the socket `fd`; `onMessage` gets what the server sends.
export function startIo(fd, onMessage) {
  const channel = new MessageChannel();
  toIo = channel.port1;
  socketFd = fd;
  io = new Worker(`(${ioThread})()`, {
    eval: true,
    workerData: { fd, shared, frames: channel.port2 },
    transferList: [channel.port2],
    name: 'cellbox-io',
  });
  const failed = (err) => {
    // Without the io thread nothing can reach the server: die loudly on the real stderr.
    realStderrWrite(`cellbox worker: io thread failed: ${err && err.stack}\n`);
    processExit(EXIT_IO_FAILED);
  };
  const ended = (code) => {
    if (!exiting) processExit(code || EXIT_IO_FAILED);
  };
  io.on('error', listener(failed));
  io.on('exit', listener(ended));
  io.on('message', listener(onMessage));
}

// A message to the io thread (input.mjs: who reads the socket), on the frames' channel.
export function postToIo(message) {
  portPost(toIo, message);
}

export function postFrames(frames, finished) {
  // A second `done` for an execution (main.mjs ended one that a termination had cut
  // short, but its first `done` had gone out already): the server must not see it.
  if (finished && finished <= AtomicsLoad(S, WRITTEN)) return;
  let bytes = 0;
  const texts = [];
  const taken = takeToJSON();
  try {
    for (let i = 0; i < frames.length; i++) {
      texts[i] = StringPrototypeSlice(JSONStringify(frames[i]), 0, -1) + executionTail;
      bytes += texts[i].length;
    }
  } finally {
    putBack(taken);
  }
  if (finished) AtomicsStore(S, FINISHED, finished); // the io thread knows before the server
  if (!(finished && AtomicsLoad(S, PENDING) === 0 && writeEnd(texts))) {
    AtomicsAdd(S, PENDING, bytes);
    portPost(toIo, { frames: texts, bytes });
  }
  // Only once they are on their way: a termination before this leaves them to be sent again.
  if (finished) AtomicsStore(S, WRITTEN, finished);
  // Backpressure: a program printing in a tight loop waits for the socket here.
  let pending = AtomicsLoad(S, PENDING);
  while (pending > OUT_LIMIT && !exiting) {
    AtomicsWait(S, PENDING, pending, 100);
    pending = AtomicsLoad(S, PENDING);
  }
}

// The frames that end an execution, written here when the io thread has nothing left to
// write (so nothing can come between them and what went before): one write, at once,
// when they fit in one buffer of the socket. Linux takes such a write to a stream socket
// whole or not at all (EAGAIN: the socket's buffer is full), so an interrupt's
// termination cannot land between two parts of it; a longer ending, which Linux could
// take in part, goes to the io thread. False if nothing was written (the io thread sends
// it all). An interrupt does not cut the ending short: the io thread stops terminating an
// execution once FINISHED names it, which is set before this runs. A termination asked
// for in the instant before that and landing before the write leaves nothing written:
// WRITTEN does not name the execution yet, so the io thread goes on asking main.mjs to
// end it (onInterrupt), which sends the ending again.
function writeEnd(texts, chars) {
  // A text takes at least as many bytes in UTF-8 as it has UTF-16 units: a longer ending
  // is left to the io thread before it is encoded here for nothing.
  if (chars + 4 * texts.length > ONE_SOCKET_BUFFER) return false;
  let size = 0;
  const bodies = [];
  for (let i = 0; i < texts.length; i++) {
    bodies[i] = BufferFrom(texts[i], 'utf8');
    size += 4 + bodies[i].length;
  }
  if (size > ONE_SOCKET_BUFFER) return false;
  const data = new Uint8ArrayCtor(size);
  let at = 0;
  for (let i = 0; i < bodies.length; i++) {
    const length = bodies[i].length;
    data[at] = length >>> 24;
    data[at + 1] = (length >>> 16) & 255;
    data[at + 2] = (length >>> 8) & 255;
    data[at + 3] = length & 255;
    TypedArrayPrototypeSet(data, bodies[i], at + 4);
    at += 4 + length;
  }
  let written = 0;
  try {
    written = ReflectApply(fsWriteSync, fs, [socketFd, data]);
  } catch {
    return false; // EAGAIN (the socket's buffer is full), or the server has gone
  }
  if (written < size) {
    // (only with a send buffer under 64 KiB, see net.core.wmem_default): the io thread
    // sends the rest
    const rest = TypedArrayPrototypeSubarray(data, written);
    AtomicsAdd(S, PENDING, rest.length);
    portPost(toIo, { raw: rest, bytes: rest.length });
  }
  return true;
}

export function flush(finished = 0) {
  flushScheduled = false;
  if (queue.length === 0 && !finished) return;
  lastFlushAt = now();
  const frames = queue;
  queue = [];
  queuedChars = 0;
  postFrames(frames, finished);
}

function scheduledFlush() {
  if (flushScheduled && running) flush();
  flushScheduled = false;
}

const resolved = PromiseResolve();
/** Runs `fn` as a microtask of its own (outside any async scope Node pushed, see timers.mjs). */
export function inMicrotask(fn) {
  PromisePrototypeThen(resolved, fn);
}
function deferredFlush() {
  inMicrotask(scheduledFlush);
}

export function enqueue(frame, size) {
  if (!running) {
    // Idle: hold it for the next execution, bounded.
    if (queuedChars + size > IDLE_CAP) {
      idleDropped += size;
      return;
    }
  }
  ArrayPrototypePush(queue, frame);
  queuedChars += size;
  afterEnqueue();
}

function afterEnqueue() {
  if (!running) return;
  if (queuedChars >= FLUSH_CHARS || now() - lastFlushAt > FLUSH_AGE_MS) {
    flush();
  } else if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(deferredFlush);
  }
}

export function emitText(type, text) {
  if (!text) return;
  text = StringPrototypeToWellFormed(text);
  const last = queue[queue.length - 1];
  if (!running && queuedChars + text.length > IDLE_CAP) {
    idleDropped += text.length;
    return;
  }
  if (last !== undefined && last.type === type && last.text.length < FLUSH_CHARS) {
    last.text += text;
    queuedChars += text.length;
    afterEnqueue();
  } else {
    enqueue({ type, text }, text.length);
  }
}


// An execution starts: its first output goes out at once, after what was held back.
export function beginExecution(serverId) {
  // An integer from the server; turned to text without JSON (a cell may give numbers a toJSON)
  executionTail = `,"id":${NumberIsInteger(serverId) ? serverId : 0}}`;
  running = true;
  lastFlushAt = 0;
  if (idleDropped > 0) {
    emitText('stderr', `[cellbox: ${idleDropped} characters of background output were dropped]\n`);
    idleDropped = 0;
  }
  if (queue.length) flush();
}

// Queue frames without sending them yet (the end of an execution sends them all).
export function push(...frames) {
  for (let i = 0; i < frames.length; i++) ArrayPrototypePush(queue, frames[i]);
}

// Is the last frame queued a `done`?
export function doneQueued() {
  const last = queue[queue.length - 1];
  return last !== undefined && last.type === 'done';
}

// The execution `id` is over (its `done` is queued): send everything.
export function endExecution(id) {
  running = false;
  flush(id);
}

// The process exits (process.exit() from user code, or EOF): push out what was printed.
export function flushAtExit() {
  exiting = true;
  if (queue.length) {
    const frames = queue;
    queue = [];
    postFrames(frames, 0);
  }
  const deadline = DateNow() + 1000;
  let pending = AtomicsLoad(S, PENDING);
  while (pending > 0 && DateNow() < deadline) {
    AtomicsWait(S, PENDING, pending, 20);
    pending = AtomicsLoad(S, PENDING);
  }
}
