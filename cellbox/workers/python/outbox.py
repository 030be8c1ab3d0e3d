"""The worker's outgoing frames, in order, written to the socket by one sender thread."""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Any

import orjson

from cellbox import exit_codes
from cellbox.ansi import ANSI_TAIL_RE, strip_ansi
from cellbox.protocol import encode

# Output batching / flow control.
TEXTFRAME_CHARS = 1 << 20  # the largest text chunk put in one stdout/stderr frame
BACKLOG_LIMIT = 16 << 20  # writers block (during an execution) past this many queued chars
IDLE_LIMIT = 1 << 20  # output produced between executions beyond this is dropped

STDOUT = "stdout"
STDERR = "stderr"
END = "end"  # outbox control entry: the ``done`` frame of an execution
FRAME = "frame"  # outbox control entry: a pre-encoded frame


def block_sigint() -> None:
    """Keep SIGINT away from the calling (non-main) thread."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (OSError, ValueError, AttributeError):
        pass


class Log:
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


class Outbox:
    """Everything the worker sends, in order, written to the socket by one sender thread.

    ``_items`` is append-only for producers; the sender removes a prefix (under ``_lock``)
    each round. A plain ``str`` entry is stdout text (appended without a lock by the hot
    path of ``sys.stdout.write``: ``list.append`` is atomic); anything else is a tuple
    ``(tag, payload)``: stderr text, a pre-encoded frame, or the ``done`` frame that ends
    an execution. Between executions the sender holds output back (up to a limit) so
    nothing is sent after ``done``. ``_size`` is an estimate used only for flow control.
    """

    def __init__(self, sock: socket.socket, log: Log) -> None:
        self._sock = sock
        self._log = log
        # Reentrant: a finalizer run by the garbage collector inside a locked section may
        # print, which comes back here on the same thread.
        self._lock = threading.RLock()
        self._space = threading.Condition(self._lock)  # writers waiting for the backlog
        self._throttled = 0  # how many writers wait on ``_space`` (changed under ``_lock``)
        self._wake = threading.Event()  # set when the sleeping sender has work
        self._items: list[Any] = []
        self._controls = 0  # tuple entries in ``_items`` (all appended under ``_lock``)
        self._size = 0
        self._active = False
        self.execution_id: Any = None  # the server's id of the execution, on its frames
        self._waiting = False  # the sender may be about to sleep: producers must kick it
        self._kicked = False  # a producer already kicked it (spares repeated Event.set)
        self._dropped = 0
        self._tails: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._send_lock = threading.Lock()

    # -- producers --------------------------------------------------------------------

    def put_text(self, kind: str, text: str) -> None:
        with self._lock:
            if not self._active and self._size > IDLE_LIMIT:
                self._dropped += len(text)
                return
            if kind == STDOUT:
                self._items.append(text)
            else:
                self._items.append((STDERR, text))
                self._controls += 1
            self._size += len(text)
            over = self._active and self._size > BACKLOG_LIMIT
        if self._waiting:
            self._kick()
        if over:
            self._throttle()

    def put_frame(self, frame: bytes, tag: str = FRAME, *, soon: bool = True) -> None:
        """Queue a frame. ``soon=False``: it may wait for the ``done`` frame's send (the
        cell's value and its error come last), which spares a sender wake-up."""
        with self._lock:
            self._items.append((tag, frame))
            self._controls += 1
            self._size += len(frame)
            over = tag == FRAME and self._active and self._size > BACKLOG_LIMIT
        # A writer held back past the limit waits for the sender: it must be awake even for a
        # frame that could have waited for ``done`` (a cell value or error that big).
        if (soon or over) and self._waiting:
            self._kick()
        if over:
            self._throttle()

    def put_end(self, frame: bytes) -> None:
        """Send what is pending and then the ``done`` frame, from the calling thread.

        Sending it here (not via the sender thread) saves a thread hand-off per execution.
        """
        with self._lock:
            self._items.append((END, frame))
            self._controls += 1
        self._send_pending()

    def activate(self, execution_id: Any) -> None:
        """Execution ``execution_id`` starts: let held-back output flow again, as its."""
        with self._lock:
            self.execution_id = execution_id
            self._active = True
            dropped, self._dropped = self._dropped, 0
        if dropped:
            note = f"[{dropped} characters of output produced between executions were dropped]\n"
            self.put_text(STDERR, note)
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
            self._throttled += 1
            try:
                while self._active and self._size > BACKLOG_LIMIT and self._items:
                    self._space.wait(0.5)
            finally:
                self._throttled -= 1

    # -- the sender thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cellbox-sender", daemon=True)
        self._thread.start()

    def send_now(self, frame: bytes) -> None:
        """Write one frame directly, bypassing the queue (only between executions)."""
        with self._send_lock:
            self._sock.sendall(frame)

    def _run(self) -> None:
        block_sigint()
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
            os._exit(exit_codes.INTERNAL_ERROR)

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
                if self._throttled:  # (a notify_all costs as much as the rest of this block)
                    self._space.notify_all()
            if not batch:
                return
            if controls:
                frames, rest = self._encode_batch(batch)
            else:  # only stdout text (a print loop): no need to look at each entry
                frames, rest = [], None
                self._text_frames(STDOUT, batch, frames)
            if rest is not None:
                # ``done`` was in this batch: pause before the server can see it, and
                # keep what came after it for the next execution.
                with self._lock:
                    self._active = False
                    if rest:
                        self._items[:0] = rest
                        self._controls += sum(1 for x in rest if x.__class__ is not str)
                        self._size += sum(len(x if x.__class__ is str else x[1]) for x in rest)
                        if self._throttled:
                            self._space.notify_all()
            if frames:
                self._sock.sendall(b"".join(frames))

    def _encode_batch(self, batch: list[Any]) -> tuple[list[bytes], list[Any] | None]:
        frames: list[bytes] = []
        kind = STDOUT
        parts: list[str] = []
        for index, item in enumerate(batch):
            tag, payload = (STDOUT, item) if item.__class__ is str else item
            if tag is STDOUT or tag is STDERR:  # text: joined with its neighbours
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
            if tag is END:
                # An escape sequence still incomplete at the end is dropped; and nothing
                # may follow ``done``: what was printed after it waits.
                for tail_kind in list(self._tails):
                    tail = strip_ansi(self._tails.pop(tail_kind)).replace("\x1b", "")
                    if tail:
                        frames.append(self._text_frame(tail_kind, tail))
                frames.append(payload)
                return frames, batch[index + 1 :]
            frames.append(payload)
        if parts:
            self._text_frames(kind, parts, frames)
        return frames, None

    def _text_frames(self, kind: str, parts: list[str], frames: list[bytes]) -> None:
        text = self._tails.pop(kind, "") + "".join(parts)
        if "\x1b" in text:
            tail = ANSI_TAIL_RE.search(text)
            if tail is not None and len(text) - tail.start() < 256:
                self._tails[kind] = text[tail.start() :]  # maybe completed by the next chunk
                text = text[: tail.start()]
            text = strip_ansi(text)
        start = 0
        while start < len(text):
            end = start + TEXTFRAME_CHARS
            if end < len(text) and text[end - 1] == "\r":
                end += 1
            frames.append(self._text_frame(kind, text[start:end]))
            start = end

    def _text_frame(self, kind: str, text: str) -> bytes:
        try:
            return encode({"type": kind, "id": self.execution_id, "text": text})
        except (TypeError, ValueError, orjson.JSONEncodeError):
            fixed = text.encode("utf-8", "replace").decode("utf-8")
            return encode({"type": kind, "id": self.execution_id, "text": fixed})
