"""Where the user's output goes: ``sys.stdout``/``sys.stderr`` sinks, pipes behind fds 1
and 2 (subprocesses, C code), and a ``sys.stdin`` that refuses to be read."""

from __future__ import annotations

import codecs
import io
import os
import select
import threading
import time
from typing import TYPE_CHECKING, Any

from cellbox.workers.python.outbox import BACKLOG_LIMIT, STDERR, STDOUT, Log, Outbox, block_sigint

if TYPE_CHECKING:
    from cellbox.workers.python.worker import Worker

_PIPE_READ = 1 << 16
_ORDER_GAP = 0.0005  # a Python-level write after this long first drains the fd pipes
_STDIN_MESSAGE = "{} is not supported: code in this sandbox runs without standard input"
_monotonic = time.monotonic


class TextSink(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr``: every write becomes an output chunk at once."""

    def __init__(self, worker: Worker, kind: str, fd: int) -> None:
        super().__init__()
        self._worker = worker
        self._outbox = worker.outbox
        self._kind = kind
        self._stdout = kind == STDOUT
        self._fd = fd
        self.buffer = ByteSink(self)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    @property
    def name(self) -> str:
        return f"<{self._kind}>"

    @property
    def line_buffering(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if s.__class__ is not str:
            if not isinstance(s, str):
                raise TypeError(f"write() argument must be str, not {type(s).__name__}")
            s = str.__str__(s)  # the outbox tells entries apart by their exact type
        n = len(s)
        if n:
            worker = self._worker
            now = _monotonic()
            if now - worker.last_write > _ORDER_GAP:
                # Something slow happened since the last write (maybe a subprocess that
                # printed to fd 1): forward what is in the pipes first to keep the order.
                worker.drain_fds()
            worker.last_write = now
            outbox = self._outbox
            if self._stdout and outbox._active and outbox._size < BACKLOG_LIMIT:
                # The hot path of every print(): no lock (list.append is atomic).
                outbox._items.append(s)
                outbox._size += n
                if outbox._waiting and not outbox._kicked:
                    outbox._kick()
            else:
                outbox.put_text(self._kind, s)
        return n

    def write_to_fd(self) -> None:
        """In a forked child (``os.fork``, ``multiprocessing``): write straight to fd 1 or 2,
        the worker's capture pipes; the child has no sender thread to take the outbox's text."""
        self.write = self._write_fd  # type: ignore[method-assign]

    def _write_fd(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        data = memoryview(s.encode("utf-8", "replace"))
        while data:
            try:
                data = data[os.write(self._fd, data) :]
            except InterruptedError:
                continue
            except OSError:
                break
        return len(s)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass  # closing the sandbox's stdout would only break later output


class ByteSink(io.RawIOBase):
    """``sys.stdout.buffer``: bytes decoded as UTF-8 and forwarded like text."""

    def __init__(self, sink: TextSink) -> None:
        super().__init__()
        self._sink = sink
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, b: Any) -> int:
        data = bytes(b)
        text = self._decoder.decode(data)
        if text:
            self._sink.write(text)
        return len(data)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._sink.fileno()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _stdin_error(what: str) -> BaseException:
    from IPython.core.error import StdinNotImplementedError

    return StdinNotImplementedError(_STDIN_MESSAGE.format(what))


class _ClosedTerminal:
    """What both stdin stand-ins answer alike: no terminal, fd 0, closing does nothing."""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 0

    def close(self) -> None:
        pass


class NoStdin(_ClosedTerminal, io.TextIOBase):
    """``sys.stdin``: there is no standard input; reading fails at once."""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def name(self) -> str:
        return "<stdin>"

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        raise _stdin_error("sys.stdin.read()")

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        raise _stdin_error("sys.stdin.readline()")

    def readlines(self, hint: int | None = -1) -> list[str]:  # type: ignore[override]
        raise _stdin_error("sys.stdin.readlines()")

    @property
    def buffer(self) -> NoStdinBuffer:
        return _NO_STDIN_BUFFER


class NoStdinBuffer(_ClosedTerminal, io.BufferedIOBase):
    """``sys.stdin.buffer``: reading fails at once, as reading ``sys.stdin`` does."""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        raise _stdin_error("sys.stdin.buffer.read()")

    def read1(self, size: int = -1) -> bytes:
        raise _stdin_error("sys.stdin.buffer.read1()")

    def readinto(self, buffer: Any) -> int:
        raise _stdin_error("sys.stdin.buffer.readinto()")

    def readline(self, size: int | None = -1) -> bytes:
        raise _stdin_error("sys.stdin.buffer.readline()")

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        raise _stdin_error("sys.stdin.buffer.readlines()")


_NO_STDIN_BUFFER = NoStdinBuffer()


def no_input(prompt: object = "") -> str:
    raise _stdin_error("input()")


def no_getpass(prompt: str = "Password: ", stream: Any = None) -> str:
    raise _stdin_error("getpass()")


class FdCapture:
    """Pipes behind fds 1 and 2, so output of subprocesses and C code is captured too.

    A background thread forwards whatever arrives. ``drain()`` forwards everything already
    in the pipes synchronously: every read happens under one lock, so once ``drain()`` has
    seen both pipes empty, all bytes written before it are in the outbox.
    """

    def __init__(self, outbox: Outbox, log: Log) -> None:
        self._outbox = outbox
        self._log = log
        self._lock = threading.RLock()  # reentrant for the same reason as the outbox's
        self._pipes: dict[int, tuple[str, Any]] = {}
        self._ready = select.poll()  # drain()'s own: a poll object is not shared by threads
        # (fd 1 or 2, a private copy of the pipe's write end, the pipe's identity)
        self._ends: list[tuple[int, int, tuple[int, int]]] = []

    def install(self) -> None:
        for target, kind in ((1, STDOUT), (2, STDERR)):
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.dup2(write_fd, target)  # inheritable: children write here
            # ``write_fd`` is kept, not inheritable: ``restore`` puts the pipe back behind
            # fd 1 or 2 from it, and the pipe never reads as ended (which would make the
            # reader spin) when the code closes both.
            self._ends.append((target, write_fd, _identity(write_fd)))
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self._pipes[read_fd] = (kind, decoder)
            self._ready.register(read_fd, select.POLLIN)

    def restore(self) -> None:
        """Put the pipes back behind fds 1 and 2 where the code closed or replaced them
        (``os.close(1)``, ``os.dup2(devnull, 2)``): one ``fstat`` each when it did not."""
        for target, private, (device, inode) in self._ends:
            try:
                status = os.fstat(target)  # (_identity's, inline: this runs every cell)
                if status.st_ino == inode and status.st_dev == device:
                    continue
            except OSError:
                pass  # closed
            pipe = (device, inode)
            try:
                if _identity(private) == pipe:  # else the code closed the copy too
                    os.dup2(private, target)
                    continue
            except OSError:
                pass
            self._log.write(f"cannot restore fd {target}: its pipe is gone")

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="cellbox-fd-reader", daemon=True)
        thread.start()

    def _run(self) -> None:
        block_sigint()
        poller = select.poll()
        for fd in self._pipes:
            poller.register(fd, select.POLLIN)
        while True:
            try:
                for fd, _events in poller.poll():
                    self._read(fd)
            except Exception as exc:  # pragma: no cover - defensive
                self._log.write(f"fd reader: {exc!r}")
                time.sleep(0.05)

    def _read(self, fd: int) -> None:
        with self._lock:
            kind, decoder = self._pipes[fd]
            while True:
                try:
                    data = os.read(fd, _PIPE_READ)
                except BlockingIOError:
                    return
                except InterruptedError:
                    continue
                if not data:
                    return
                text = decoder.decode(data)
                if text:
                    self._outbox.put_text(kind, text)
                if len(data) < _PIPE_READ:
                    return

    def drain(self) -> None:
        # One poll() finds the pipes with data (mostly none: no read, no EAGAIN to raise);
        # under the lock, so a read the thread has begun is in the outbox first.
        with self._lock:
            for fd, _events in self._ready.poll(0):
                self._read(fd)


def _identity(fd: int) -> tuple[int, int]:
    """What ``fd`` is open on (device and inode: a pipe has its own)."""
    status = os.fstat(fd)
    return status.st_dev, status.st_ino
