// console.* and process.stdout/stderr, captured into the worker's ordered output.

import { Console } from 'node:console';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

import {
  BufferFrom,
  BufferIsEncoding,
  ObjectDefineProperty,
  process,
  processNextTick,
  ReflectApply,
  StringCtor,
  Uint8ArrayCtor,
} from './intrinsics.mjs';
import { emitText } from './output.mjs';

const { emit } = EventEmitter.prototype;
// end() of a capture stream: it is told finished ('finish', which stream.pipeline and
// finished() wait for) and stays open, as the next cells print on it too.
function ended(stream, cb) {
  ReflectApply(emit, stream, ['finish']);
  if (typeof cb === 'function') cb();
}

function closed(stream) {
  ReflectApply(emit, stream, ['close']);
}

class CaptureStream extends Writable {
  constructor(type, fd) {
    // Never closed: stream.finished() and pipeline() then take 'finish' for its end.
    super({ decodeStrings: false, autoDestroy: false, emitClose: false });
    this.type = type;
    this.fd = fd;
    this.isTTY = false;
    this.decoder = new StringDecoder('utf8');
  }
  _text(chunk, encoding) {
    if (typeof chunk === 'string') {
      if (encoding && encoding !== 'utf8' && encoding !== 'utf-8' && BufferIsEncoding(encoding)) {
        return this.decoder.write(BufferFrom(chunk, encoding));
      }
      return chunk;
    }
    if (chunk instanceof Uint8ArrayCtor) {
      return this.decoder.write(BufferFrom(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    return StringCtor(chunk);
  }
  write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    emitText(this.type, this._text(chunk, encoding));
    if (typeof cb === 'function') processNextTick(cb, null);
    return true;
  }
  _write(chunk, encoding, cb) {
    emitText(this.type, this._text(chunk, encoding));
    cb();
  }
  end(chunk, encoding, cb) {
    if (typeof chunk === 'function') {
      cb = chunk;
      chunk = undefined;
    } else if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    if (chunk !== undefined && chunk !== null) this.write(chunk, encoding);
    processNextTick(ended, this, cb);
    return this;
  }
  // destroy() (a pipeline into it that failed): what Node does for its own stdout, so the
  // stream stays usable and 'close' still tells finished() and pipeline() it is over.
  _destroy(err, cb) {
    cb(err);
    this._undestroy();
    processNextTick(closed, this);
  }
  hasColors() {
    return false;
  }
  getColorDepth() {
    return 1;
  }
  getWindowSize() {
    return [80, 24];
  }
}

let capturedStdout = null;
let capturedStderr = null;

/** Bytes written to fd 1 or 2 by other means (fd_output.mjs): told as the process.stdout or
 * process.stderr write of them would be, through the same decoder (a character split
 * between the two ways still arrives whole). */
export function emitFdBytes(fd, bytes) {
  const stream = fd === 1 ? capturedStdout : capturedStderr;
  emitText(stream.type, stream._text(bytes));
}

export function installConsole() {
  capturedStdout = new CaptureStream('stdout', 1);
  capturedStderr = new CaptureStream('stderr', 2);
  ObjectDefineProperty(process, 'stdout', {
    configurable: true,
    enumerable: true,
    get: () => capturedStdout,
  });
  ObjectDefineProperty(process, 'stderr', {
    configurable: true,
    enumerable: true,
    get: () => capturedStderr,
  });
  globalThis.console = new Console({
    stdout: capturedStdout,
    stderr: capturedStderr,
    colorMode: false,
    // The capture streams never fail. With the default (true) every call passes a
    // completion callback, queued with process.nextTick: a synchronous print loop would
    // pile those up without bound.
    ignoreErrors: false,
  });
}
