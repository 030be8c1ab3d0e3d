"""The Python worker's protocol loop: one REPL context in IPython's InteractiveShell.

Launch: ``python -m cellbox.workers.python --fd N`` where ``N`` is an inherited, connected
UNIX stream socket speaking the protocol of :mod:`cellbox.protocol`.

Split so that a fork server (zygote) can reuse it:

- :func:`prepare` does the heavy one-time work (imports IPython, builds the shell, sets
  ``MPLBACKEND=Agg``, installs the display/traceback/stdin hooks). It starts no threads and
  touches no file descriptors, so a single-threaded zygote can call it and then fork.
- :func:`preload` imports extra modules (``numpy``, ``pandas``, ``matplotlib.pyplot`` ...)
  into the prepared process; nothing is preloaded by default.
- :func:`serve` takes over the process for one context: it redirects fds 0/1/2, starts
  the sender, output-capture and inbox threads, sends ``ready`` and runs the protocol loop
  until the socket reaches EOF, at which point the process exits.
- :func:`main` parses ``--fd N`` and runs ``prepare()`` then ``serve(N)``.

User code runs on the main thread, which also reads the socket between executions
(:mod:`.inbox`). Threads (all started in :func:`serve`): the inbox's watcher (reads the
socket while code runs: an ``interrupt`` becomes SIGINT for the main thread; ends the
process when the server hangs up), one sender (:mod:`.outbox`: the only writer of the
socket during executions; coalesces output chunks), and one reader for the pipes behind
fds 1 and 2.
"""

from __future__ import annotations

import builtins
import os
import signal
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cellbox.ansi import strip_ansi
from cellbox.packages import python_path
from cellbox.protocol import encode
from cellbox.workers.python import capture, shell
from cellbox.workers.python.builtins_guard import DeletedBuiltins
from cellbox.workers.python.capture import FdCapture, NoStdin, TextSink
from cellbox.workers.python.figures import Figures, patch_pyplot
from cellbox.workers.python.frames import clean_bundle, encode_lenient
from cellbox.workers.python.inbox import Inbox
from cellbox.workers.python.outbox import STDERR, STDOUT, Log, Outbox
from cellbox.workers.python.tracebacks import Tracebacks

_WORKER: Worker | None = None


class Worker:
    """The state of one prepared worker process."""

    def __init__(self) -> None:
        self.log = Log()
        self.outbox: Outbox = None  # type: ignore[assignment]  # set in serve()
        self.capture: FdCapture | None = None
        self.last_write = 0.0
        self.shell: Any = None
        self.figures = Figures(self)
        self.tracebacks: Tracebacks = None  # type: ignore[assignment]  # set in prepare()
        self.inbox = Inbox(self.log)
        self.deleted_builtins: DeletedBuiltins = None  # type: ignore[assignment]  # prepare()
        self._shield = 0
        self._error_sent = False
        self._cell = 0
        self._names_in_cell = 0
        self._libc_fflush: Any = None
        self._streams: tuple[TextSink, TextSink] | None = None  # sys.stdout/stderr, set in serve()

    # -- one-time setup (no threads, no fd changes) ----------------------------------

    def prepare(self) -> None:
        os.environ["MPLBACKEND"] = "Agg"
        import warnings

        warnings.filterwarnings("ignore", message="To exit: use 'exit', 'quit', or Ctrl-D.")
        warnings.filterwarnings("ignore", message=".*non-interactive, and thus cannot be shown")

        import IPython
        from IPython.core import formatters
        from IPython.core.error import UsageError

        self.shell = shell.create_shell(self)
        self.shell.compile.get_code_name = self._code_name
        self.figures.install(self.shell.display_formatter)
        internal = (os.path.dirname(IPython.__file__) + os.sep,)
        self.tracebacks = Tracebacks(
            UsageError, formatters.__file__, internal, self.shell.InteractiveTB
        )

        builtins.input = capture.no_input
        import getpass

        getpass.getpass = capture.no_getpass
        self.deleted_builtins = DeletedBuiltins()  # after the hooks above: they are kept

    # -- serving one context ---------------------------------------------------------

    def serve(self, fd: int) -> None:
        sock = socket.socket(fileno=fd)
        os.set_inheritable(sock.fileno(), False)
        self.outbox = Outbox(sock, self.log)

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
        self.capture = FdCapture(self.outbox, self.log)
        self.capture.install()
        self._streams = (TextSink(self, STDOUT, 1), TextSink(self, STDERR, 2))
        sys.stdout, sys.stderr = self._streams
        os.register_at_fork(after_in_child=self._in_forked_child)
        sys.stdin = NoStdin()
        signal.signal(signal.SIGINT, self._on_sigint)
        self._start_directory_history()
        # ``%cd`` alone goes home, as in Jupyter: the context's $HOME, not the one the
        # shell was made under (a zygote's).
        self.shell.home_dir = self.shell.logger.home_dir = os.path.expanduser("~")
        self._warm_up()

        self.outbox.start()
        self.capture.start()
        self.outbox.send_now(encode({"type": "ready"}))
        self.inbox.start(sock)

        while True:
            number, request = self.inbox.next()
            if request.get("op") == "chdir":
                self._chdir(request.get("path"))
                continue
            try:
                self._execute(number, request)
            except BaseException as exc:  # never let the loop die
                self.inbox.running = False
                self.log.write(f"execution machinery failed: {exc!r}")
                try:
                    if not self._error_sent:
                        self.report_exception(type(exc), exc, exc.__traceback__)
                    self._finish()
                except BaseException as again:
                    self.log.write(f"could not finish the execution: {again!r}")

    def _warm_up(self) -> None:
        """A silent cell and a value's text, once, before ``ready``. Running code copies
        the pages this process shares with the zygote that it writes to (CPython updates
        reference counts and its adaptive bytecode in place), which made a context's first
        cell ~1 ms slower than this; a worker does it while it waits in the pool. The same
        steps as the zygote's own warm-up, which made what they make shareable."""
        try:
            shell.run_cell_path_once(self.shell)
        except Exception as exc:  # the first cell pays for it instead
            self.log.write(f"warm-up failed: {exc!r}")

    def _in_forked_child(self) -> None:
        """A child the code forked prints into the pipes the worker reads, as in Jupyter."""
        assert self._streams is not None
        for sink in self._streams:
            sink.write_to_fd()

    def _chdir(self, path: Any) -> None:
        """``chdir`` (between executions): answered at once, not held back like output."""
        try:
            if not isinstance(path, str):
                raise TypeError("chdir: 'path' must be a string")
            os.chdir(path)
            self._start_directory_history()
            reply = {"type": "chdir", "ok": True, "error": ""}
        except Exception as exc:
            reply = {"type": "chdir", "ok": False, "error": f"cannot change directory: {exc}"}
        try:
            self.outbox.send_now(encode_lenient(reply))
        except OSError:
            os._exit(0)  # the server went away

    def _start_directory_history(self) -> None:
        """IPython's directory history (``_dh``, ``%cd -``, ``%dhist``) starts at the
        context's directory, not at the one the shell was made in (a zygote's)."""
        self.shell.history_manager.dir_hist[:] = [Path.cwd()]

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.inbox.heard()
        if self.inbox.running and not self._shield:
            raise KeyboardInterrupt

    # -- one execution -----------------------------------------------------------------

    def _execute(self, number: int, request: dict[str, Any]) -> None:
        self._repair_output()
        code = request.get("code")
        env = request.get("env") or {}
        count = request.get("count")
        numbered = type(count) is not int or count > 0  # 0: the server's own, unnumbered
        if type(count) is int and count > 0:
            self._cell = count
            self.shell.number_next_cell(count)
        else:
            self._cell += 1
        self._names_in_cell = 0
        self._error_sent = False
        self.figures.new_cell()
        self.outbox.activate(request.get("id"))
        saved_env: dict[str, str | None] = {}
        try:
            if not isinstance(code, str):
                raise TypeError("execute: 'code' must be a string")
            if not isinstance(env, dict):
                raise TypeError("execute: 'env' must be an object")
            if env:
                _apply_env(env, saved_env)
        except Exception as exc:
            _restore_env(saved_env)
            self.report_exception(type(exc), exc, None)
            self._finish()
            return

        result = None
        try:
            try:
                if self.inbox.enter(number):  # from here on an interrupt raises there
                    raise KeyboardInterrupt
                try:
                    result = self.shell.run_cell(code, store_history=numbered)
                finally:
                    self.deleted_builtins.restore()
                self.figures.flush()
            except BaseException as exc:  # an interrupt outside the user's code, or a bug
                self.report_exception(type(exc), exc, exc.__traceback__)
        finally:
            self.inbox.leave()

        try:
            if result is not None and not self._error_sent:
                failure = result.error_before_exec or result.error_in_exec
                if failure is not None:
                    self.report_exception(type(failure), failure, failure.__traceback__)
        finally:
            if saved_env:
                _restore_env(saved_env)
            self._finish()

    def _repair_output(self) -> None:
        """Undo what earlier code did to the output (closed or replaced fds 1/2,
        ``sys.stdout``, ``sys.stderr``, ``sys.displayhook``), so each execution starts
        whole."""
        assert self.capture is not None and self._streams is not None
        if sys.stdout is not self._streams[0] or sys.stderr is not self._streams[1]:
            # First: a file the code had put there may close fd 1 or 2 as it is dropped
            # (``os.close(1)`` then ``sys.stdout = open(...)``, which got fd 1).
            sys.stdout, sys.stderr = self._streams
        self.capture.restore()
        # IPython sets it before every cell; here its display trap is entered once for good
        if sys.displayhook is not self.shell.displayhook:
            sys.displayhook = self.shell.displayhook

    def _finish(self) -> None:
        """Forward all pending output, then ``done``."""
        self._flush_low_level()
        self.outbox.put_end(encode({"type": "done", "id": self.outbox.execution_id}))

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

    def emit_bundle(self, kind: str, data: dict[Any, Any], *, clean: bool = True) -> None:
        """A ``display`` or ``result`` event, after any output printed before it.
        ``clean=False``: ``data`` is known to be as the protocol wants it already."""
        bundle = clean_bundle(data) if clean else data
        frame = encode_lenient({"type": kind, "id": self.outbox.execution_id, "bundle": bundle})
        self.drain_fds()
        self.outbox.put_frame(frame, soon=kind != "result")

    def report_exception(self, etype: Any, value: Any, tb: Any) -> None:
        """The cell failed: one ``error`` event (later failures go to stderr)."""
        self.deleted_builtins.restore()  # the report needs them (the code may go on after)
        self._shield += 1  # an interrupt now would only garble the report
        try:
            if self.tracebacks.in_formatter(tb):
                # A failing _repr_*_ method: IPython skips that format; just tell stderr.
                text = self.tracebacks.format(etype, value, tb)
                self.drain_fds()
                self.outbox.put_text(STDERR, f"Error in a display formatter:\n{text}")
                return
            name = getattr(etype, "__name__", None) or type(value).__name__
            try:
                message = str(value)
            except Exception:
                message = "<exception str() failed>"
            text = self.tracebacks.format(etype, value, tb)
            self.drain_fds()
            if self._error_sent:
                self.outbox.put_text(STDERR, text)
                return
            event = {
                "type": "error",
                "id": self.outbox.execution_id,
                "name": strip_ansi(name),
                "value": strip_ansi(message),
                "traceback": text,
            }
            self.outbox.put_frame(encode_lenient(event), soon=False)
            self._error_sent = True
        except Exception as exc:  # pragma: no cover - defensive
            self.log.write(f"could not report an exception: {exc!r}")
        finally:
            self._shield -= 1

    def _code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        self._names_in_cell += 1
        if self._names_in_cell == 1:
            return f"<cell {self._cell}>"
        return f"<cell {self._cell}.{self._names_in_cell - 1}>"


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


def _import_from_the_current_directory() -> None:
    """``import helper`` finds the ``helper.py`` the code wrote in its current directory,
    as in Jupyter: ``python -m`` put the directory the worker started in first on
    ``sys.path``; the current directory (``""``, which follows ``os.chdir``) takes its place.
    """
    if sys.path and sys.path[0] == os.getcwd():
        sys.path[0] = ""


def prepare() -> None:
    """Do the heavy one-time work; safe before ``fork()`` (no threads, no fd changes).

    Idempotent. Imports IPython, creates the shell and installs all hooks. Does not import
    numpy, pandas or matplotlib (see :func:`preload`).
    """
    global _WORKER
    if _WORKER is not None:
        return
    _import_from_the_current_directory()
    worker = Worker()
    worker.prepare()
    os.system = shell.interruptible_system
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
        patch_pyplot(sys.modules["matplotlib.pyplot"])


def serve(fd: int) -> None:
    """Serve the protocol on the connected socket ``fd`` until EOF, then exit the process."""
    prepare()
    python_path.activate()  # the context's own packages (a zygote child learns its env late)
    assert _WORKER is not None
    _WORKER.serve(fd)


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m cellbox.workers.python --fd N``."""
    args = list(sys.argv[1:] if argv is None else argv)
    fd = None
    for index, arg in enumerate(args):
        if arg == "--fd" and index + 1 < len(args):
            fd = args[index + 1]
        elif arg.startswith("--fd="):
            fd = arg[len("--fd=") :]
    if fd is None or not fd.isdigit():
        sys.stderr.write("usage: python -m cellbox.workers.python --fd N\n")
        raise SystemExit(2)
    prepare()
    serve(int(fd))
