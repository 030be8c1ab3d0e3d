"""The Python zygote: a prepared, preloaded, single-threaded interpreter that forks workers.

Launch (by the server, through ``Sandbox.zygote_command``)::

    python -m cellbox.workers.zygote --control N [--preload numpy,pandas]

It runs the Python worker's ``prepare`` and ``preload`` (:mod:`cellbox.workers.python.worker`) once, then forks one
child per context, so every context starts with IPython and the data stack already in
memory, shared copy-on-write. Each fork makes this tree::

    zygote ── C   joins the unit's cgroups, sets rlimits, unshares the user namespace (uid
               │  mapped to itself) and pid/ipc/uts/cgroup(/net); waits for I, writes its
               │  status to the status pipe (the server's exit notification) and exits
               └── I   pid 1 of the new pid namespace: a mount namespace of its own (C keeps
                    │  the zygote's: a /proc that shows C), private mounts, no user namespaces,
                    │  no capabilities; reaps orphans; exits with W's status (128+N when W
                    │  died of signal N), which takes the whole namespace down; exits at once
                    │  when the server closes its end of W's socket (or dies)
                    └── W   pid 2: the worker, ``python_worker.serve(fd)``

Control protocol: :mod:`cellbox.workers.zygote.messages`.

The zygote is only a forker: nothing of a context depends on it once forked. C reports
I's exit status (as a shell would: 128+N for signal N) on the status pipe, whose only
writer it is, so a context's end is told to the server even when its zygote died long
before; the zygote merely reaps the C's it forked.

The zygote must stay single-threaded to fork safely: BLAS/OpenMP thread pools are limited
to one thread before anything is imported, and the thread count is checked before forking.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from cellbox.procfs import thread_count
from cellbox.sandbox.policy import EXIT_CANNOT_FORK, EXIT_SETUP_FAILED
from cellbox.workers.python import worker as python_worker
from cellbox.workers.zygote import BLAS_THREAD_VARS, confine, messages
from cellbox.workers.zygote.warm_up import warm_up


def _send(control: socket.socket, message: messages.Message) -> None:
    control.send(messages.encode(message))


def _exit_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _reap() -> list[tuple[int, int]]:
    """(pid, wait status) of every child that has ended, without blocking."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        ended.append((pid, status))
    return ended


def _wakeup_pipe() -> int:
    """A pipe that becomes readable on SIGCHLD; returns its read end."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    return read_end


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _close_all_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


# --------------------------------------------------------------------------- the zygote


def main(argv: list[str] | None = None) -> None:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    for name in BLAS_THREAD_VARS:  # before numpy & co are imported
        os.environ[name] = "1"
    python_worker.prepare()
    python_worker.preload(args["preload"])
    warm_up()  # what a first cell loads and caches is then shared too
    gc.collect()
    gc.freeze()  # the collector then leaves the shared objects (and their pages) alone
    control = socket.socket(fileno=args["control"])
    threads = thread_count()
    if threads != 1:
        sys.stderr.write(f"cellbox zygote: {threads} threads after preload; cannot fork\n")
        raise SystemExit(EXIT_CANNOT_FORK)
    _send(control, messages.Ready(pid=os.getpid()))
    _serve(control)


def _parse(args: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {"preload": []}
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    try:
        options["control"] = int(pairs["--control"])
    except (KeyError, ValueError):
        sys.stderr.write("usage: zygote --control N [--preload a,b]\n")
        raise SystemExit(2) from None
    if pairs.get("--preload"):
        options["preload"] = pairs["--preload"].split(",")
    return options


def _serve(control: socket.socket) -> None:
    """Answer fork requests until the server closes the control socket."""
    wakeup = _wakeup_pipe()
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(wakeup, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wakeup:
                _drain(wakeup)
                _reap()  # C told the server itself
                continue
            payload, fds, _, _ = socket.recv_fds(control, messages.MAX_MESSAGE, messages.MAX_FDS)
            if not payload:
                return  # the server is gone
            request = messages.decode(payload)
            assert isinstance(request, messages.Fork), request
            pid = _fork(request, fds)
            for passed in fds:
                os.close(passed)
            if pid is None:
                _send(control, messages.Failed(id=request.id, error="fork failed"))
            else:
                _send(control, messages.Forked(id=request.id, pid=pid))


def _fork(request: messages.Fork, fds: list[int]) -> int | None:
    if thread_count() != 1:
        sys.stderr.write("cellbox zygote: more than one thread; refusing to fork\n")
        raise SystemExit(EXIT_CANNOT_FORK)
    try:
        pid = os.fork()
    except OSError as exc:
        sys.stderr.write(f"cellbox zygote: fork failed: {exc}\n")
        return None
    if pid == 0:
        _never_return(_context_process, request, fds)
    return pid


def _never_return(process: Callable[..., int | None], *args: Any) -> NoReturn:
    """Run a forked process's body and exit; what fails is told on its stderr."""
    code = EXIT_SETUP_FAILED
    try:
        code = process(*args) or 0
    except BaseException as exc:
        message = f"cellbox zygote: setting up the context failed: {exc!r}\n"
        os.write(2, message.encode(errors="replace"))
    finally:
        os._exit(code)


# --------------------------------------------------------------------------- per context


def _context_process(request: messages.Fork, fds: list[int]) -> int:
    """C: confine, fork I, and report how I ended."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    protocol, stderr, status, *tasks = fds
    confine.join_cgroups(tasks)  # first: nothing of this context runs outside its cgroups
    os.setsid()
    confine.set_rlimits(request.rlimits)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(stderr, 2)
    _close_all_except({0, 1, 2, protocol, status})
    os.environ.clear()
    os.environ.update(request.env)
    confine.enter_user_namespace()
    confine.unshare_namespaces(request.network)
    init = os.fork()
    if init == 0:
        os.close(status)  # C alone writes it: its end is the context's end
        _never_return(_init_process, request, protocol)
    _close_all_except({2, status})
    confine.drop_capabilities()  # those it got with the user namespace: I has its own
    _, wait_status = os.waitpid(init, 0)
    code = _exit_code(wait_status)
    os.write(status, b"%d\n" % code)
    return code


def _init_process(request: messages.Fork, protocol: int) -> None:
    """I: pid 1 of the context's pid namespace."""
    workdir = request.workdir
    confine.mount_private_view(workdir, request.tmpfs_size, request.keep)
    if not request.network:
        confine.bring_up_loopback()
    confine.forbid_user_namespaces()
    os.chdir(workdir)
    os.setsid()
    # W (same uid) must not be able to ptrace or signal its init
    confine.set_dumpable(False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    confine.drop_capabilities()
    wakeup = _wakeup_pipe()
    worker = os.fork()
    if worker == 0:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _close_all_except({0, 1, 2, protocol})
        _never_return(_worker_process, protocol)
    # W's socket, only watched for the server's end closing (hang-up is always reported)
    poller = select.poll()
    poller.register(protocol, select.POLLRDHUP)
    poller.register(wakeup, select.POLLIN)
    while True:
        for pid, status in _reap():
            if pid == worker:
                os._exit(_exit_code(status))
        for fd, _ in poller.poll():
            if fd == protocol:
                os._exit(128 + signal.SIGKILL)  # the server is gone or dropped the worker
            _drain(wakeup)


def _worker_process(protocol: int) -> None:
    """W: the context's worker."""
    confine.set_dumpable(True)
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()  # or every context would draw the same "random" numbers
    python_worker.serve(protocol)
