// The main thread's reading of the socket, between executions. The io thread reads it while
// an execution runs (io_thread.mjs has the hand-over): so a request between executions wakes
// this thread straight from the socket, without going through the io thread (a thread
// wake-up, a message), and the io thread does not wake at all for an execution shorter
// than its LOOK_MS. Interrupts are read by the io thread, which can stop user code this
// thread is stuck in; this thread reads none (no execution runs while it reads).
//
// The request that starts an execution hands the reading over before the execution
// starts: this socket stops reading at once, and READER says the io thread's turn; bytes
// read past that request (the start of a next frame) go to the io thread with the turn.
// Everything here runs between executions, but after cells: it uses the built-ins taken
// at startup only (intrinsics.mjs).

import { Buffer } from 'node:buffer';
import net from 'node:net';

import {
  AtomicsAdd,
  AtomicsCompareExchange,
  AtomicsExchange,
  AtomicsLoad,
  AtomicsNotify,
  AtomicsStore,
  AtomicsWait,
  BufferFrom,
  DateNow,
  JSONParse,
  listener,
  ObjectDefineProperty,
  ObjectHasOwn,
  ReflectApply,
  TypedArrayPrototypeSubarray,
} from './intrinsics.mjs';
import {
  READER_YIELDED,
  FINISHED,
  IO_ASLEEP,
  IO_READING,
  MAIN_READS,
  postToIo,
  READ_LOCK,
  READER,
  READER_HANDOFF,
  READER_IO,
  READER_MAIN,
  S,
  STARTED,
  STARTED_AT,
} from './output.mjs';

const utf8Slice = Buffer.prototype.utf8Slice;
const bufferConcat = Buffer.concat;

let sock = null;
let deliver = null;
// The socket's reading is started and stopped on its handle, as net.Socket's own pause and
// resume do for an onread socket, but without them: they call through
// Function.prototype.call, which a cell may have replaced.
let handle = null;
let readStart = null;
let readStop = null;
function startSocket() {
  if (handle.reading) return;
  handle.reading = true;
  ReflectApply(readStart, handle, []);
}
function stopSocket() {
  handle.reading = false;
  ReflectApply(readStop, handle, []);
}

/** Reads the socket `fd`; `onMessage` gets what is read, as the io thread posts it. */
export function startInput(fd, onMessage) {
  deliver = onMessage;
  sock = new net.Socket({
    fd,
    readable: true,
    writable: false,
    allowHalfOpen: true,
    onread: { buffer: Buffer.allocUnsafe(64 * 1024), callback: onRead },
  });
  handle = sock._handle;
  readStart = handle.readStart;
  readStop = handle.readStop;
  const gone = listener(() => deliver({ op: 'eof' }));
  sock.on('end', gone);
  sock.on('error', gone);
}

// The start of a frame that is not whole yet, in copies (the read buffer is reused).
let chunks = [];
let have = 0;

function frameLength(data, at) {
  return ((data[at] << 24) | (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3]) >>> 0;
}

let inRead = false;
function onRead(size, buf) {
  AtomicsAdd(S, MAIN_READS, 1);
  inRead = true;
  try {
    readFrames(size, buf);
  } finally {
    inRead = false;
  }
}

function readFrames(size, buf) {
  let data = TypedArrayPrototypeSubarray(buf, 0, size);
  if (have > 0) {
    chunks[chunks.length] = BufferFrom(data);
    have += size;
    if (have < 4) return;
    if (chunks[0].length < 4) chunks = [ReflectApply(bufferConcat, Buffer, [chunks, have])];
    if (have < 4 + frameLength(chunks[0], 0)) return;
    data = ReflectApply(bufferConcat, Buffer, [chunks, have]);
    chunks = [];
    have = 0;
  }
  let at = 0;
  while (data.length - at >= 4) {
    const length = frameLength(data, at);
    if (data.length - at < 4 + length) break;
    const payload = ReflectApply(utf8Slice, data, [at + 4, at + 4 + length]);
    at += 4 + length;
    let msg;
    try {
      msg = JSONParse(payload);
    } catch {
      continue;
    }
    if (msg === null || typeof msg !== 'object') continue;
    if (msg.op === 'execute') {
      const id = AtomicsAdd(S, STARTED, 1) + 1;
      STARTED_AT[0] = DateNow();
      handOver(data, at);
      inRead = false; // (a termination in the cell would skip the finally)
      const env = ObjectHasOwn(msg, 'env') && msg.env && typeof msg.env === 'object' ? msg.env : {};
      const code = ObjectHasOwn(msg, 'code') && typeof msg.code === 'string' ? msg.code : '';
      deliver({ op: 'execute', id, serverId: msg.id, code, env });
      return;
    }
    if (msg.op === 'chdir') deliver({ op: 'chdir', path: msg.path });
    // `interrupt`: no execution runs (the server's came after the `done`)
  }
  if (at < data.length) {
    chunks = [BufferFrom(TypedArrayPrototypeSubarray(data, at))];
    have = data.length - at;
  }
}

// The io thread's turn to read: this socket stops at once, then READER says so; the io
// thread finds it when it next looks, or now if it slept (a message wakes it).
function handOver(data, at) {
  stopSocket();
  if (at < data.length) {
    const rest = BufferFrom(TypedArrayPrototypeSubarray(data, at));
    AtomicsStore(S, READER, READER_HANDOFF);
    postToIo({ op: 'bytes', bytes: rest });
    return;
  }
  AtomicsStore(S, READER, READER_IO);
  if (AtomicsExchange(S, IO_ASLEEP, 0) === 1) postToIo({ op: 'wake' });
}

// READ_LOCK is held only while a thread starts or stops its reading, for microseconds. If
// it stays taken, its holder was cut short there (an interrupt's termination landing just
// after an execution's end): it is taken over after a second rather than waited for forever.
function lock() {
  const deadline = DateNow() + 1000;
  while (AtomicsCompareExchange(S, READ_LOCK, 0, 1) !== 0 && DateNow() < deadline) {
    AtomicsWait(S, READ_LOCK, 1, 1);
  }
}
function unlock() {
  AtomicsStore(S, READ_LOCK, 0);
  AtomicsNotify(S, READ_LOCK);
}

/** After an execution's `done`: the reading comes back here if no execution is left. If
 * the io thread has started reading, it hands the reading back itself (`reader`). */
export function takeReading() {
  if (AtomicsLoad(S, READER) === READER_MAIN) return;
  if (AtomicsLoad(S, STARTED) !== AtomicsLoad(S, FINISHED)) return;
  let mine = false;
  turning = true;
  lock();
  try {
    if (AtomicsLoad(S, READER) === READER_IO && AtomicsLoad(S, IO_READING) === 0) {
      AtomicsStore(S, READER, READER_MAIN);
      mine = true;
    }
  } finally {
    unlock();
  }
  if (mine) startSocket();
  else postToIo({ op: 'reader' });
  turning = false;
}

/** The io thread handed the reading back (`reader`). */
export function readingBack() {
  turning = true;
  if (AtomicsLoad(S, READER) === READER_MAIN) startSocket();
  turning = false;
}

// Between READER_MAIN and the start of this socket's reading (a yield run there would stop
// the socket just before it starts). Not cleared by a termination that cuts it short: the
// next takeReading or readingBack clears it.
let turning = false;

// This thread stuck in code between executions (a busy timer callback of an earlier cell):
// it reads nothing, so a request and the interrupt that follows it would wait unread until
// the server kills the worker. The io thread sees it (the thread is not waiting in its event
// loop, io_thread.mjs) and has this run here, inside the code that runs, through the
// inspector (Runtime.evaluate, which V8 runs between two steps of any JavaScript): the
// socket stops, on its own thread, where it reads, and the io thread reads at once
// (READER_YIELDED), until this thread waits in its event loop again.
function yieldReading() {
  if (inRead || turning || handle === null || AtomicsLoad(S, READER) !== READER_MAIN) return;
  stopSocket();
  if (have > 0) {
    const rest = ReflectApply(bufferConcat, Buffer, [chunks, have]);
    chunks = [];
    have = 0;
    AtomicsStore(S, READER, READER_HANDOFF);
    postToIo({ op: 'bytes', bytes: rest, yielded: true });
    return;
  }
  AtomicsStore(S, READER, READER_YIELDED);
}
ObjectDefineProperty(globalThis, '__cellbox_reading__', {
  value: yieldReading,
  writable: false,
  configurable: false,
  enumerable: false,
});
