"""The Python worker: runs user code for one REPL context inside IPython's InteractiveShell.

Launch: ``python -m cellbox.workers.python_worker --fd N`` where ``N`` is an inherited,
connected UNIX stream socket speaking the protocol of :mod:`cellbox.protocol`.

The module is split so that a fork server (zygote) can reuse it:

- :func:`prepare` does the heavy one-time work (imports IPython, builds the shell, sets
  ``MPLBACKEND=Agg``, installs the display/traceback/stdin hooks). It starts no threads and
  touches no file descriptors, so a single-threaded zygote can call it and then fork.
- :func:`preload` imports extra modules (``numpy``, ``pandas``, ``matplotlib.pyplot`` ...)
  into the prepared process; nothing is preloaded by default.
- :func:`serve` takes over the process for one context: it redirects fds 0/1/2, starts
  the reader, sender and output-capture threads, sends ``ready`` and runs the protocol loop
  until the socket reaches EOF, at which point the process exits.
- :func:`main` parses ``--fd N`` and runs ``prepare()`` then ``serve(N)``.

Threads (all started in :func:`serve`): a socket reader (turns ``interrupt`` into SIGINT for
the main thread, queues ``execute`` and ``chdir``), one sender (the only writer of the socket
during executions; coalesces output chunks), and one reader for the pipes behind fds 1 and 2.
User code runs on the main thread.
"""

from __future__ import annotations

import base64
import builtins
import codecs
import functools
import io
import itertools
import os
import queue
import re
import select
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterable
from typing import Any

import orjson

from cellbox.protocol import HEADER, decode, encode

# Output batching / flow control.
_TEXT_FRAME_CHARS = 1 << 20  # the largest text chunk put in one stdout/stderr frame
_BACKLOG_LIMIT = 16 << 20  # writers block (during an execution) past this many queued chars
_IDLE_LIMIT = 1 << 20  # output produced between executions beyond this is dropped
_PIPE_READ = 1 << 16
_ORDER_GAP = 0.0005  # a Python-level write after this long first drains the fd pipes

_STDOUT = "stdout"
_STDERR = "stderr"
_END = "end"  # outbox control entry: the ``done`` frame of an execution
_FRAME = "frame"  # outbox control entry: a pre-encoded frame
_monotonic = time.monotonic

_BINARY_MIMES = frozenset({"image/png", "image/jpeg", "application/pdf"})
_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC ... BEL / ST
    r"|\x1b[PX^_][^\x1b]*\x1b\\"  # DCS / SOS / PM / APC ... ST
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
)
# An escape sequence cut off at the end of a chunk (kept back until more text arrives).
_ANSI_TAIL_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[PX^_][^\x1b]*)?\Z")
_STDIN_MESSAGE = "{} is not supported: code in this sandbox runs without standard input"

_WORKER: _Worker | None = None


def _strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text) if "\x1b" in text else text


def _block_sigint() -> None:
    """Keep SIGINT away from the calling (non-main) thread."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (OSError, ValueError, AttributeError):
        pass


def _sanitize_json(value: Any) -> Any:
    """A JSON-encodable copy of ``value`` (bad strings repaired, odd objects stringified)."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {_sanitize_json(str(k)): _sanitize_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize_json(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        try:
            return _sanitize_json(tolist())
        except Exception:
            pass
    return _sanitize_json(str(value))


def _encode_lenient(message: dict[str, Any]) -> bytes:
    """``encode(message)``, repairing values that JSON cannot carry as they are."""
    try:
        return encode(message)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        pass
    try:
        payload = orjson.dumps(
            message,
            default=str,
            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        )
        return HEADER.pack(len(payload)) + payload
    except (TypeError, ValueError, orjson.JSONEncodeError):
        return encode(_sanitize_json(message))


def _clean_bundle(data: dict[Any, Any]) -> dict[str, Any]:
    """A MIME bundle as the protocol wants it: binary types base64, text without ANSI."""
    bundle: dict[str, Any] = {}
    for mime, value in data.items():
        if not isinstance(mime, str):
            continue
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if mime in _BINARY_MIMES or not (
                mime.startswith("text/") or mime.endswith(("+xml", "/javascript", "+json"))
            ):
                value = base64.b64encode(raw).decode("ascii")
            else:
                value = raw.decode("utf-8", "replace")
        elif mime in _BINARY_MIMES and isinstance(value, str):
            value = "".join(value.split())  # already base64; drop line breaks
        if mime == "text/plain" and isinstance(value, str):
            value = _strip_ansi(value)
        bundle[mime] = value
    return bundle


class _Outbox:
    """Everything the worker sends, in order, written to the socket by one sender thread.

    ``_items`` is append-only for producers; the sender removes a prefix (under ``_lock``)
    each round. A plain ``str`` entry is stdout text (appended without a lock by the hot
    path of ``sys.stdout.write``: ``list.append`` is atomic); anything else is a tuple
    ``(tag, payload)``: stderr text, a pre-encoded frame, or the ``done`` frame that ends
    an execution. Between executions the sender holds output back (up to a limit) so
    nothing is sent after ``done``. ``_size`` is an estimate used only for flow control.
    """

    def __init__(self, sock: socket.socket, log: _Log) -> None:
        self._sock = sock
        self._log = log
        # Reentrant: a finalizer run by the garbage collector inside a locked section may
        # print, which comes back here on the same thread.
        self._lock = threading.RLock()
        self._space = threading.Condition(self._lock)  # writers waiting for the backlog
        self._wake = threading.Event()  # set when the sleeping sender has work
        self._items: list[Any] = []
        self._controls = 0  # tuple entries in ``_items`` (all appended under ``_lock``)
        self._size = 0
        self._active = False
        self._waiting = False  # the sender may be about to sleep: producers must kick it
        self._kicked = False  # a producer already kicked it (spares repeated Event.set)
        self._dropped = 0
        self._tails: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()

    # -- producers --------------------------------------------------------------------

    def put_text(self, kind: str, text: str) -> None:
        with self._lock:
            if not self._active and self._size > _IDLE_LIMIT:
                self._dropped += len(text)
                return
            if kind == _STDOUT:
                self._items.append(text)
            else:
                self._items.append((_STDERR, text))
                self._controls += 1
            self._size += len(text)
            over = self._active and self._size > _BACKLOG_LIMIT
        if self._waiting:
            self._kick()
        if over:
            self._throttle()

    def put_frame(self, frame: bytes, tag: str = _FRAME, *, soon: bool = True) -> None:
        """Queue a frame. ``soon=False``: it may wait for the ``done`` frame's send (the
        cell's value and its error come last), which spares a sender wake-up."""
        with self._lock:
            self._items.append((tag, frame))
            self._controls += 1
            self._size += len(frame)
            over = tag == _FRAME and self._active and self._size > _BACKLOG_LIMIT
        if soon and self._waiting:
            self._kick()
        if over:
            self._throttle()

    def put_end(self, frame: bytes) -> None:
        """Send what is pending and then the ``done`` frame, from the calling thread.

        Sending it here (not via the sender thread) saves a thread hand-off per execution.
        """
        with self._lock:
            self._items.append((_END, frame))
            self._controls += 1
        self._send_pending()

    def activate(self) -> None:
        """An execution starts: let held-back output flow again."""
        with self._lock:
            self._active = True
            dropped, self._dropped = self._dropped, 0
        if dropped:
            note = f"[{dropped} characters of output produced between executions were dropped]\n"
            self.put_text(_STDERR, note)
        if self._items:  # held-back output: the sender has work now (else: no wake-up)
            self._wake.set()

    def _kick(self) -> None:
        if not self._kicked:
            self._kicked = True
            self._wake.set()

    def _throttle(self) -> None:
        if threading.current_thread() is self._thread:
            return
        with self._lock:
            while self._active and self._size > _BACKLOG_LIMIT and self._items:
                self._space.wait(0.5)

    # -- the sender thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cellbox-sender", daemon=True)
        self._thread.start()

    def send_now(self, frame: bytes) -> None:
        """Write one frame directly, bypassing the queue (only between executions)."""
        with self._send_lock:
            self._sock.sendall(frame)

    def _run(self) -> None:
        _block_sigint()
        try:
            while True:
                # Announce the nap before looking: a producer that appends after the look
                # sees ``_waiting`` and sets ``_wake`` (the GIL orders these steps).
                self._wake.clear()
                self._kicked = False
                self._waiting = True
                if not (self._active and self._items):
                    self._wake.wait()
                self._waiting = False
                self._send_pending()
        except OSError:
            os._exit(0)  # the server went away
        except BaseException as exc:  # pragma: no cover - defensive
            self._log.write(f"sender thread died: {exc!r}")
            os._exit(70)

    def _send_pending(self) -> None:
        """Take everything queued and write it, in order (one writer at a time)."""
        with self._send_lock:
            with self._lock:
                if not self._active:
                    return
                batch = self._items[:]
                del self._items[:]
                controls, self._controls = self._controls, 0
                self._size = 0
                self._space.notify_all()
            if not batch:
                return
            if controls:
                frames, rest = self._encode_batch(batch)
            else:  # only stdout text (a print loop): no need to look at each entry
                frames, rest = [], None
                self._text_frames(_STDOUT, batch, frames)
            if rest is not None:
                # ``done`` was in this batch: pause before the server can see it, and
                # keep what came after it for the next execution.
                with self._lock:
                    self._active = False
                    self._items[:0] = rest
                    self._controls += sum(1 for x in rest if x.__class__ is not str)
                    self._size += sum(len(x if x.__class__ is str else x[1]) for x in rest)
                    self._space.notify_all()
            if frames:
                self._sock.sendall(b"".join(frames))

    def _encode_batch(self, batch: list[Any]) -> tuple[list[bytes], list[Any] | None]:
        frames: list[bytes] = []
        kind = _STDOUT
        parts: list[str] = []
        for index, item in enumerate(batch):
            tag, payload = (_STDOUT, item) if item.__class__ is str else item
            if tag is _STDOUT or tag is _STDERR:  # text: joined with its neighbours
                if kind is not tag:
                    if parts:
                        self._text_frames(kind, parts, frames)
                        parts = []
                    kind = tag
                parts.append(payload)
                continue
            if parts:
                self._text_frames(kind, parts, frames)
                parts = []
            if tag is _END:
                # An escape sequence still incomplete at the end is dropped; and nothing
                # may follow ``done``: what was printed after it waits.
                for tail_kind in list(self._tails):
                    tail = _strip_ansi(self._tails.pop(tail_kind)).replace("\x1b", "")
                    if tail:
                        frames.append(encode({"type": tail_kind, "text": tail}))
                frames.append(payload)
                return frames, batch[index + 1 :]
            frames.append(payload)
        if parts:
            self._text_frames(kind, parts, frames)
        return frames, None

    def _text_frames(self, kind: str, parts: list[str], frames: list[bytes]) -> None:
        text = self._tails.pop(kind, "") + "".join(parts)
        if "\x1b" in text:
            tail = _ANSI_TAIL_RE.search(text)
            if tail is not None and len(text) - tail.start() < 256:
                self._tails[kind] = text[tail.start() :]  # maybe completed by the next chunk
                text = text[: tail.start()]
            text = _strip_ansi(text)
        start = 0
        while start < len(text):
            end = start + _TEXT_FRAME_CHARS
            if end < len(text) and text[end - 1] == "\r":
                end += 1
            chunk = text[start:end]
            start = end
            try:
                frames.append(encode({"type": kind, "text": chunk}))
            except (TypeError, ValueError, orjson.JSONEncodeError):
                fixed = chunk.encode("utf-8", "replace").decode("utf-8")
                frames.append(encode({"type": kind, "text": fixed}))


class _Log:
    """Diagnostics of the worker itself, written to the worker's original stderr."""

    def __init__(self) -> None:
        self._fd = 2

    def detach(self) -> None:
        """Keep a private copy of the current stderr before fd 2 is redirected."""
        try:
            self._fd = os.dup(2)
        except OSError:
            self._fd = -1

    def write(self, message: str) -> None:
        if self._fd < 0:
            return
        try:
            os.write(self._fd, f"cellbox python worker: {message}\n".encode(errors="replace"))
        except OSError:
            pass


class _TextSink(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr``: every write becomes an output chunk at once."""

    def __init__(self, worker: _Worker, kind: str, fd: int) -> None:
        super().__init__()
        self._worker = worker
        self._outbox = worker.outbox
        self._kind = kind
        self._stdout = kind == _STDOUT
        self._fd = fd
        self.buffer = _ByteSink(self)

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
            if self._stdout and outbox._active and outbox._size < _BACKLOG_LIMIT:
                # The hot path of every print(): no lock (list.append is atomic).
                outbox._items.append(s)
                outbox._size += n
                if outbox._waiting and not outbox._kicked:
                    outbox._kick()
            else:
                outbox.put_text(self._kind, s)
        return n

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


class _ByteSink(io.RawIOBase):
    """``sys.stdout.buffer``: bytes decoded as UTF-8 and forwarded like text."""

    def __init__(self, sink: _TextSink) -> None:
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


class _NoStdin(io.TextIOBase):
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

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 0

    def close(self) -> None:
        pass


def _no_input(prompt: object = "") -> str:
    raise _stdin_error("input()")


def _no_getpass(prompt: str = "Password: ", stream: Any = None) -> str:
    raise _stdin_error("getpass()")


class _FdCapture:
    """Pipes behind fds 1 and 2, so output of subprocesses and C code is captured too.

    A background thread forwards whatever arrives. ``drain()`` forwards everything already
    in the pipes synchronously: every read happens under one lock, so once ``drain()`` has
    seen both pipes empty, all bytes written before it are in the outbox.
    """

    def __init__(self, outbox: _Outbox, log: _Log) -> None:
        self._outbox = outbox
        self._log = log
        self._lock = threading.RLock()  # reentrant for the same reason as the outbox's
        self._pipes: dict[int, tuple[str, Any]] = {}

    def install(self) -> None:
        for target, kind in ((1, _STDOUT), (2, _STDERR)):
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.dup2(write_fd, target)  # inheritable: children write here
            os.close(write_fd)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            self._pipes[read_fd] = (kind, decoder)

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="cellbox-fd-reader", daemon=True)
        thread.start()

    def _run(self) -> None:
        _block_sigint()
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
        for fd in self._pipes:
            self._read(fd)


class _PyplotFinder:
    """Import hook: patches ``matplotlib.pyplot`` right after it is first imported.

    This keeps matplotlib out of startup while making ``plt.show()`` emit figures.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "matplotlib.pyplot":
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PyplotLoader(spec.loader)
        return spec


class _PyplotLoader:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _patch_pyplot(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _patch_pyplot(pyplot: Any) -> None:
    if getattr(pyplot, "_cellbox_patched", False):
        return
    pyplot._cellbox_original_show = pyplot.show
    pyplot.show = _pyplot_show
    pyplot._cellbox_patched = True
    _patch_savefig()


def _patch_savefig() -> None:
    """``Figure.savefig`` leaves a figure marked stale; undo that if it was clean before.

    Staleness is how the worker tells that a figure shown earlier was drawn on again.
    """
    figure_mod = sys.modules.get("matplotlib.figure")
    if figure_mod is None:
        return
    figure_cls = figure_mod.Figure
    if getattr(figure_cls.savefig, "_cellbox_wrapped", False):
        return
    original = figure_cls.savefig

    @functools.wraps(original)
    def savefig(self: Any, *args: Any, **kwargs: Any) -> Any:
        was_stale = self.stale
        try:
            return original(self, *args, **kwargs)
        finally:
            if not was_stale:
                self.stale = False

    savefig._cellbox_wrapped = True  # type: ignore[attr-defined]
    figure_cls.savefig = savefig


def _pyplot_show(*args: Any, **kwargs: Any) -> None:
    """``plt.show()``: emit every pending figure now, then close them."""
    worker = _WORKER
    if worker is not None:
        worker.flush_figures()


class _Worker:
    """The state of one prepared worker process."""

    def __init__(self) -> None:
        self.log = _Log()
        self.outbox: _Outbox = None  # type: ignore[assignment]  # set in serve()
        self.capture: _FdCapture | None = None
        self.last_write = 0.0
        self.shell: Any = None
        self._running = False
        self._shield = 0
        self._error_sent = False
        self._cell = 0
        self._names_in_cell = 0
        self._requests: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._shown: weakref.WeakSet[Any] = weakref.WeakSet()
        self._emitted: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._emit_seq = itertools.count()
        self._formatters_file = ""
        self._usage_error: type[BaseException] | None = None
        self._internal_dirs: tuple[str, ...] = ()
        self._libc_fflush: Any = None

    # -- one-time setup (no threads, no fd changes) ----------------------------------

    def prepare(self) -> None:
        os.environ["MPLBACKEND"] = "Agg"
        import warnings

        warnings.filterwarnings("ignore", message="To exit: use 'exit', 'quit', or Ctrl-D.")
        warnings.filterwarnings("ignore", message=".*non-interactive, and thus cannot be shown")

        from IPython.core import formatters
        from traitlets.config import Config

        shell_cls = _make_shell_class(self)
        config = Config()
        config.HistoryManager.enabled = False
        config.InteractiveShell.colors = "nocolor"
        # No Out[] history: it would keep up to 1000 results alive and warn when it fills.
        # ``_``, ``__`` and ``___`` still work.
        config.InteractiveShell.cache_size = 0
        shell = shell_cls.instance(config=config)
        self.shell = shell
        shell.compile.get_code_name = self._code_name

        display = shell.display_formatter
        for formatter in display.formatters.values():
            formatter.enabled = True
        display.active_types = list(display.formatters)
        display.formatters["image/png"].for_type_by_name(
            "matplotlib.figure", "Figure", self._figure_png
        )
        display.formatters["image/svg+xml"].for_type_by_name(
            "matplotlib.figure", "Figure", self._figure_svg
        )

        import IPython
        from IPython.core.error import UsageError

        self._usage_error = UsageError
        self._formatters_file = formatters.__file__
        self._internal_dirs = (os.path.dirname(IPython.__file__) + os.sep,)

        builtins.input = _no_input
        import getpass

        getpass.getpass = _no_getpass

        if not any(isinstance(finder, _PyplotFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, _PyplotFinder())
        if "matplotlib.pyplot" in sys.modules:
            _patch_pyplot(sys.modules["matplotlib.pyplot"])

    # -- serving one context ---------------------------------------------------------

    def serve(self, fd: int) -> None:
        sock = socket.socket(fileno=fd)
        os.set_inheritable(sock.fileno(), False)
        self.outbox = _Outbox(sock, self.log)

        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        self.log.detach()
        devnull = os.open(os.devnull, os.O_RDONLY)
        if devnull != 0:
            os.dup2(devnull, 0)
            os.close(devnull)
        self.capture = _FdCapture(self.outbox, self.log)
        self.capture.install()
        sys.stdout = _TextSink(self, _STDOUT, 1)
        sys.stderr = _TextSink(self, _STDERR, 2)
        sys.stdin = _NoStdin()
        signal.signal(signal.SIGINT, self._on_sigint)

        self.outbox.start()
        self.capture.start()
        reader = threading.Thread(target=self._read_loop, args=(sock,), name="cellbox-reader")
        reader.daemon = True
        self.outbox.send_now(encode({"type": "ready"}))
        reader.start()

        while True:
            request = self._requests.get()
            if request.get("op") == "chdir":
                self._chdir(request.get("path"))
                continue
            try:
                self._execute(request)
            except BaseException as exc:  # never let the loop die
                self._running = False
                self.log.write(f"execution machinery failed: {exc!r}")
                try:
                    if not self._error_sent:
                        self.report_exception(type(exc), exc, exc.__traceback__)
                    self._finish()
                except BaseException as again:
                    self.log.write(f"could not finish the execution: {again!r}")

    def _read_loop(self, sock: socket.socket) -> None:
        _block_sigint()
        main_ident = threading.main_thread().ident
        try:
            while True:
                header = _recv_exact(sock, HEADER.size)
                if header is None:
                    break
                (length,) = HEADER.unpack(header)
                payload = _recv_exact(sock, length)
                if payload is None:
                    break
                try:
                    message = decode(payload)
                except Exception as exc:
                    self.log.write(f"undecodable frame: {exc!r}")
                    continue
                op = message.get("op") if isinstance(message, dict) else None
                if op == "interrupt":
                    if self._running and main_ident is not None:
                        signal.pthread_kill(main_ident, signal.SIGINT)
                elif op == "execute" or op == "chdir":
                    self._requests.put(message)  # handled in order by the main thread
                else:
                    self.log.write(f"unknown message {op!r}")
        except Exception as exc:
            self.log.write(f"socket reader failed: {exc!r}")
        finally:
            os._exit(0)  # the server closed the connection: this context is over

    def _chdir(self, path: Any) -> None:
        """``chdir`` (between executions): answered at once, not held back like output."""
        try:
            if not isinstance(path, str):
                raise TypeError("chdir: 'path' must be a string")
            os.chdir(path)
            reply = {"type": "chdir", "ok": True, "error": ""}
        except Exception as exc:
            reply = {"type": "chdir", "ok": False, "error": f"cannot change directory: {exc}"}
        try:
            self.outbox.send_now(_encode_lenient(reply))
        except OSError:
            os._exit(0)  # the server went away

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._running and not self._shield:
            raise KeyboardInterrupt

    # -- one execution -----------------------------------------------------------------

    def _execute(self, request: dict[str, Any]) -> None:
        code = request.get("code")
        env = request.get("env") or {}
        self._cell += 1
        self._names_in_cell = 0
        self._error_sent = False
        self._shown = weakref.WeakSet()
        self.outbox.activate()
        saved_env: dict[str, str | None] = {}
        try:
            if not isinstance(code, str):
                raise TypeError("execute: 'code' must be a string")
            if not isinstance(env, dict):
                raise TypeError("execute: 'env' must be an object")
            _apply_env(env, saved_env)
        except Exception as exc:
            _restore_env(saved_env)
            self.report_exception(type(exc), exc, None)
            self._finish()
            return

        result = None
        try:
            try:
                self._running = True  # from here on an interrupt raises KeyboardInterrupt
                result = self.shell.run_cell(code, store_history=True)
                self.flush_figures()
            except BaseException as exc:  # an interrupt outside the user's code, or a bug
                self.report_exception(type(exc), exc, exc.__traceback__)
        finally:
            while True:  # leave the interruptible state even if an interrupt lands here
                try:
                    self._running = False
                    break
                except KeyboardInterrupt:
                    pass

        try:
            if result is not None and not self._error_sent:
                failure = result.error_before_exec or result.error_in_exec
                if failure is not None:
                    self.report_exception(type(failure), failure, failure.__traceback__)
        finally:
            _restore_env(saved_env)
            self._finish()

    def _finish(self) -> None:
        """Forward all pending output, then ``done``."""
        self._flush_low_level()
        self.outbox.put_end(encode({"type": "done"}))

    def _flush_low_level(self) -> None:
        if self._libc_fflush is None:
            self._libc_fflush = False
            try:
                import ctypes  # imported on first use: it is not needed for startup

                self._libc_fflush = ctypes.CDLL(None).fflush
            except Exception:
                pass
        if self._libc_fflush:
            try:
                self._libc_fflush(None)
            except Exception:
                pass
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        self.drain_fds()

    def drain_fds(self) -> None:
        capture = self.capture
        if capture is not None:
            capture.drain()

    # -- events ----------------------------------------------------------------------

    def emit_bundle(self, kind: str, data: dict[Any, Any]) -> None:
        """A ``display`` or ``result`` event, after any output printed before it."""
        bundle = _clean_bundle(data)
        frame = _encode_lenient({"type": kind, "bundle": bundle})
        self.drain_fds()
        self.outbox.put_frame(frame, soon=kind != "result")

    def report_exception(self, etype: Any, value: Any, tb: Any) -> None:
        """The cell failed: one ``error`` event (later failures go to stderr)."""
        self._shield += 1  # an interrupt now would only garble the report
        try:
            if (
                tb is not None
                and self._formatters_file
                and tb.tb_frame.f_code.co_filename == self._formatters_file
            ):
                # A failing _repr_*_ method: IPython skips that format; just tell stderr.
                text = self._format_traceback(etype, value, tb)
                self.drain_fds()
                self.outbox.put_text(_STDERR, f"Error in a display formatter:\n{text}")
                return
            name = getattr(etype, "__name__", None) or type(value).__name__
            try:
                message = str(value)
            except Exception:
                message = "<exception str() failed>"
            text = self._format_traceback(etype, value, tb)
            self.drain_fds()
            if self._error_sent:
                self.outbox.put_text(_STDERR, text)
                return
            event = {
                "type": "error",
                "name": _strip_ansi(name),
                "value": _strip_ansi(message),
                "traceback": text,
            }
            self.outbox.put_frame(_encode_lenient(event), soon=False)
            self._error_sent = True
        except Exception as exc:  # pragma: no cover - defensive
            self.log.write(f"could not report an exception: {exc!r}")
        finally:
            self._shield -= 1

    def _format_traceback(self, etype: Any, value: Any, tb: Any) -> str:
        if self._usage_error is not None and isinstance(value, self._usage_error):
            return _strip_ansi(f"UsageError: {value}\n")  # IPython's own wording, no frames
        try:
            exc = traceback.TracebackException(etype, value, tb, compact=True)
            self._trim(exc, set(), isinstance(value, SystemExit))
            text = "".join(exc.format())
        except Exception:
            try:
                text = "".join(traceback.format_exception_only(etype, value))
            except Exception:
                text = f"{getattr(etype, '__name__', etype)}\n"
        return _strip_ansi(text)

    def _trim(self, exc: traceback.TracebackException, seen: set[int], tail: bool) -> None:
        """Hide the worker's frames, and IPython's below the user's code (and above it
        when ``tail``, e.g. ``exit()`` raising inside IPython)."""
        if id(exc) in seen:
            return
        seen.add(id(exc))
        own = __file__
        internal = self._internal_dirs
        frames = [frame for frame in exc.stack if frame.filename != own]
        start = 0
        while start < len(frames) and frames[start].filename.startswith(internal):
            start += 1
        frames = frames[start:]
        while tail and frames and frames[-1].filename.startswith(internal):
            frames.pop()
        exc.stack = traceback.StackSummary.from_list(frames)
        for chained in (exc.__cause__, exc.__context__):
            if chained is not None:
                self._trim(chained, seen, False)
        for member in getattr(exc, "exceptions", None) or ():
            self._trim(member, seen, False)

    def _code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        self._names_in_cell += 1
        if self._names_in_cell == 1:
            return f"<cell {self._cell}>"
        return f"<cell {self._cell}.{self._names_in_cell - 1}>"

    # -- matplotlib ------------------------------------------------------------------

    def _figure_png(self, fig: Any) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        self._note_figure(fig)
        return buffer.getvalue()

    def _figure_svg(self, fig: Any) -> str:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight")
        self._note_figure(fig)
        return buffer.getvalue().decode("utf-8")

    def _note_figure(self, fig: Any) -> None:
        _patch_savefig()
        fig.stale = False
        self._shown.add(fig)
        if fig not in self._emitted:
            self._emitted[fig] = next(self._emit_seq)

    def flush_figures(self) -> None:
        """Emit each figure created or drawn on since it was last shown, then close it."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None and not self._emitted:
            return
        try:
            managers: list[Any] = []
            if pyplot is not None:
                from matplotlib._pylab_helpers import Gcf

                managers = sorted(Gcf.get_all_fig_managers(), key=lambda m: m.num)
            open_figs = [manager.canvas.figure for manager in managers]
            open_ids = {id(fig) for fig in open_figs}
            redrawn = sorted(
                (seq, fig)
                for fig, seq in list(self._emitted.items())
                if id(fig) not in open_ids and fig.stale
            )
            for fig in open_figs + [fig for _seq, fig in redrawn]:
                if fig in self._shown and not fig.stale:
                    continue  # already shown by this cell (as its result or display())
                data, _metadata = self.shell.display_formatter.format(fig)
                if data:
                    self.emit_bundle("display", data)
            if pyplot is not None:
                for fig in open_figs:
                    pyplot.close(fig)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.log.write(f"figure capture failed: {exc!r}")
            text = self._format_traceback(type(exc), exc, exc.__traceback__)
            self.outbox.put_text(_STDERR, f"Could not capture matplotlib figures:\n{text}")


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    if size == 0:
        return b""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        try:
            n = sock.recv_into(view[got:], size - got)
        except InterruptedError:
            continue
        if n == 0:
            return None
        got += n
    return bytes(buffer)


def _apply_env(env: dict[Any, Any], saved: dict[str, str | None]) -> None:
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("execute: 'env' must map strings to strings")
        if key not in saved:
            saved[key] = os.environ.get(key)
        os.environ[key] = value


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        try:
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        except Exception:
            pass
    saved.clear()


# What makes a cell more than plain Python to IPython's input transformers.
_IPYTHON_SYNTAX = re.compile(r"[%!?]|^[ \t]*(?:[,;/]|>>>|\.\.\.|In \[)", re.MULTILINE)


def _make_shell_class(worker: _Worker) -> Any:
    """An InteractiveShell whose outputs, errors and shell escapes go to ``worker``."""
    import contextlib
    import subprocess

    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import Type

    plain_types = (int, float, bool, str, type(None), complex)

    class ResultHook(DisplayHook):
        def compute_format_data(self, result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            # Hot path: a plain builtin value has only a text form, unless someone
            # registered a rich formatter for its type. Skips ten formatter lookups.
            kind = type(result)
            if kind in plain_types:
                formatters = self.shell.display_formatter.formatters
                if not any(
                    kind in f.type_printers or ("builtins", kind.__name__) in f.deferred_printers
                    for mime, f in formatters.items()
                    if mime != "text/plain"
                ):
                    return {"text/plain": formatters["text/plain"](result)}, {}
            return super().compute_format_data(result)

        def quiet(self) -> bool:
            # IPython tokenizes the whole cell to find a trailing ';': not without a ';'.
            history = self.shell.history_manager.input_hist_parsed
            if history and ";" not in history[-1]:
                return False
            return super().quiet()

        def update_user_ns(self, result: Any) -> None:
            # ``_``, ``__``, ``___`` as in IPython, without its Out[] cache (cache_size=0).
            self.___, self.__, self._ = self.__, self._, result
            self.shell.user_ns.update({"_": self._, "__": self.__, "___": self.___})

        def write_output_prompt(self) -> None:
            pass

        def write_format_data(self, format_dict: Any, md_dict: Any = None) -> None:
            worker.emit_bundle("result", format_dict)

        def log_output(self, format_dict: Any) -> None:
            pass  # no output history: it would keep every bundle alive

        def finish_displayhook(self) -> None:
            self._is_active = False

    class Publisher(DisplayPublisher):
        def publish(
            self,
            data: Any,
            metadata: Any = None,
            source: Any = None,
            *,
            transient: Any = None,
            update: bool = False,
            **kwargs: Any,
        ) -> None:
            if not isinstance(data, dict):
                raise TypeError(f"data must be a dict, got: {data!r}")
            worker.emit_bundle("display", data)

        def clear_output(self, wait: bool = False) -> None:
            pass

    class Shell(InteractiveShell):
        displayhook_class = Type(ResultHook)
        display_pub_class = Type(Publisher)

        def transform_cell(self, raw_cell: str) -> str:
            # A cell with no IPython syntax at all (no magics, shell escapes, help, prompts,
            # autocall escapes, leading indentation) is plain Python: skip the static
            # transforms, which would return it unchanged.
            if raw_cell[:1].isspace() or _IPYTHON_SYNTAX.search(raw_cell):
                return super().transform_cell(raw_cell)
            cell = raw_cell if raw_cell.endswith("\n") else raw_cell + "\n"
            if cell.count("\n") == 1:  # one line: IPython's prefilter (aliases, autocall)
                with self.builtin_trap:
                    cell = self.prefilter_manager.prefilter_lines(cell) + "\n"
            lines = cell.splitlines(keepends=True)
            for transform in self.input_transformers_post:
                lines = transform(lines)
            return "".join(lines)

        def should_run_async(
            self,
            raw_cell: str,
            *,
            transformed_cell: Any = None,
            preprocessing_exc_tuple: Any = None,
        ) -> bool:
            # Top-level await needs the word: most cells skip IPython's trial compile.
            cell = transformed_cell if isinstance(transformed_cell, str) else raw_cell
            if "await" not in cell and "async" not in cell:
                return False
            return super().should_run_async(
                raw_cell,
                transformed_cell=transformed_cell,
                preprocessing_exc_tuple=preprocessing_exc_tuple,
            )

        def showtraceback(
            self,
            exc_tuple: Any = None,
            filename: str | None = None,
            tb_offset: int | None = None,
            exception_only: bool = False,
            running_compiled_code: bool = False,
        ) -> None:
            try:
                etype, value, tb = self._get_exc_info(exc_tuple)
            except ValueError:
                return
            if filename and isinstance(value, SyntaxError):
                value.filename = filename
            worker.report_exception(etype, value, tb)

        def showsyntaxerror(
            self, filename: str | None = None, running_compiled_code: bool = False
        ) -> None:
            self.showtraceback(filename=filename)

        def showindentationerror(self) -> None:
            self.showtraceback()

        def _format_exception_for_storage(
            self, exception: Any, filename: Any = None, running_compiled_code: bool = False
        ) -> dict[str, Any]:
            # IPython 9 renders every failure again (slowly, with stack_data) for its
            # history; the worker keeps no such history.
            return {"ename": type(exception).__name__, "evalue": "", "traceback": []}

        def _tee(self, channel: str) -> Any:
            return contextlib.nullcontext()  # IPython 9 would keep all output in memory

        def system(self, cmd: str) -> None:
            """``!cmd``: run in a shell on fds 1/2; an interrupt stops it and propagates."""
            cmd = self.var_expand(cmd, depth=1)
            executable = os.environ.get("SHELL") or None
            code = subprocess.call(cmd, shell=True, executable=executable)
            if code > 128:
                code = -(code - 128)
            self.user_ns["_exit_code"] = code
            if self.system_raise_on_error and code != 0:
                raise subprocess.CalledProcessError(code, cmd)

        system_raw = system
        system_piped = system

        def init_completer(self) -> None:
            pass  # tab completion is unused here; built on first access to ``Completer``

        @property
        def Completer(self) -> Any:  # IPython's attribute name
            completer = self.__dict__.get("_cellbox_completer")
            if completer is None:
                InteractiveShell.init_completer(self)
                completer = self.__dict__["_cellbox_completer"]
            return completer

        @Completer.setter
        def Completer(self, value: Any) -> None:
            self.__dict__["_cellbox_completer"] = value

        def ask_exit(self) -> None:
            raise SystemExit()

        def enable_gui(self, gui: Any = None) -> None:
            pass

        def enable_matplotlib(self, gui: Any = None) -> tuple[Any, str]:
            import matplotlib.pyplot  # noqa: F401  (patched by the import hook)

            return gui, "agg"

    return Shell


def _interruptible_system(command: str) -> int:
    """``os.system`` that an interrupt can stop (libc's ignores SIGINT while waiting)."""
    import subprocess

    with subprocess.Popen(command, shell=True) as process:
        try:
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
    return -code if code < 0 else code << 8


def prepare() -> None:
    """Do the heavy one-time work; safe before ``fork()`` (no threads, no fd changes).

    Idempotent. Imports IPython, creates the shell and installs all hooks. Does not import
    numpy, pandas or matplotlib (see :func:`preload`).
    """
    global _WORKER
    if _WORKER is not None:
        return
    worker = _Worker()
    worker.prepare()
    os.system = _interruptible_system
    _WORKER = worker


def preload(modules: Iterable[str]) -> None:
    """Import ``modules`` now (e.g. in a zygote), so contexts start with them loaded."""
    import importlib

    prepare()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            assert _WORKER is not None
            _WORKER.log.write(f"preload of {name!r} failed: {exc!r}")
    if "matplotlib.pyplot" in sys.modules:
        _patch_pyplot(sys.modules["matplotlib.pyplot"])


def serve(fd: int) -> None:
    """Serve the protocol on the connected socket ``fd`` until EOF, then exit the process."""
    prepare()
    assert _WORKER is not None
    _WORKER.serve(fd)


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m cellbox.workers.python_worker --fd N``."""
    args = list(sys.argv[1:] if argv is None else argv)
    fd = None
    for index, arg in enumerate(args):
        if arg == "--fd" and index + 1 < len(args):
            fd = args[index + 1]
        elif arg.startswith("--fd="):
            fd = arg[len("--fd=") :]
    if fd is None or not fd.isdigit():
        sys.stderr.write("usage: python -m cellbox.workers.python_worker --fd N\n")
        raise SystemExit(2)
    prepare()
    serve(int(fd))


if __name__ == "__main__":
    # Run as the importable module, so there is a single copy of this module's state.
    from cellbox.workers import python_worker

    python_worker.main()
