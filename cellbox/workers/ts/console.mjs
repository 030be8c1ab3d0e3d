// console.* and process.stdout/stderr, captured into the worker's ordered output.

import { Console } from 'node:console';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

import { emitText } from './output.mjs';

class CaptureStream extends Writable {
  constructor(type, fd) {
    super({ decodeStrings: false });
    this.type = type;
    this.fd = fd;
    this.isTTY = false;
    this.decoder = new StringDecoder('utf8');
  }
  _text(chunk, encoding) {
    if (typeof chunk === 'string') {
      if (encoding && encoding !== 'utf8' && encoding !== 'utf-8' && Buffer.isEncoding(encoding)) {
        return this.decoder.write(Buffer.from(chunk, encoding));
      }
      return chunk;
    }
    if (chunk instanceof Uint8Array) {
      return this.decoder.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    return String(chunk);
  }
  write(chunk, encoding, cb) {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    emitText(this.type, this._text(chunk, encoding));
    if (typeof cb === 'function') process.nextTick(cb, null);
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
    if (typeof cb === 'function') process.nextTick(cb);
    return this;
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

export function installConsole() {
  const capturedStdout = new CaptureStream('stdout', 1);
  const capturedStderr = new CaptureStream('stderr', 2);
  Object.defineProperty(process, 'stdout', {
    configurable: true,
    enumerable: true,
    get: () => capturedStdout,
  });
  Object.defineProperty(process, 'stderr', {
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
