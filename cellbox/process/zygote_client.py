"""The server's side of a runtime's zygote: start it, have it fork workers, restart it.

The zygote (:mod:`cellbox.workers.zygote`) is one long-lived sandboxed process that has
imported everything a worker needs and forks a child per worker; each child confines itself
to a unit of its own (:mod:`cellbox.workers.zygote.confine`) before any user code runs. This module
starts it through :meth:`Sandbox.zygote_command`, sends it fork requests (the worker's
socket, a stderr pipe, a status pipe and the unit's cgroup files travel as fds), turns the
answers into :class:`ZygoteChild` processes for :class:`~cellbox.process.worker.WorkerProcess`.

The zygote is only a forker. A child's end is told by the child itself (its exit status on
the status pipe, of which it holds the only write end), so workers forked earlier live on,
with their state, cgroups and exit notification, when their zygote dies; a new zygote is
started at once. Each worker still dies with its socket's server end: its pid-1 process
exits when that end closes, be it by ``WorkerProcess.kill`` or the server's death.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from cellbox.placement import placement
from cellbox.process.child import Child, pipe_reader
from cellbox.process.sandbox_calls import AsyncSandbox
from cellbox.runtimes import Runtime
from cellbox.workers.zygote import messages

log = logging.getLogger("cellbox.zygote")

STARTUP_TIMEOUT_S = 60.0
RETRY_AFTER_S = 30.0  # after a failed start, workers are spawned directly this long
_units = itertools.count(1)


class ZygoteError(RuntimeError):
    """The zygote cannot be started, or died before it forked the worker."""


class ZygoteChild:
    """A worker process forked by a zygote, with what ``WorkerProcess`` needs of a process."""

    def __init__(self, stderr: asyncio.StreamReader, status: asyncio.StreamReader) -> None:
        self.pid = 0  # in the server's pid namespace; set once forked
        self.returncode: int | None = None  # like Popen's; None while running or unknown
        self.stderr = stderr
        self._ended = asyncio.create_task(self._read_status(status))

    async def _read_status(self, status: asyncio.StreamReader) -> None:
        # The status pipe reaches its end when the child's setup process exits (having
        # written I's status, or nothing if it was killed itself).
        text = await status.read()
        with contextlib.suppress(ValueError):
            self.returncode = int(text)

    async def wait(self) -> int | None:
        """Wait for the end; ``None`` if the status is unknown."""
        await asyncio.shield(self._ended)
        return self.returncode


class _Incarnation:
    """One running zygote process and its control socket."""

    def __init__(
        self,
        process: Child,
        control: socket.socket,
        on_lost: Callable[[_Incarnation], None],
    ) -> None:
        self.process = process
        self.control = control
        self.alive = True
        self.pid = 0  # the zygote's own, once ready
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count(1)
        self._forking: dict[int, asyncio.Future[int]] = {}
        self._on_lost = on_lost
        self._send_lock = asyncio.Lock()
        self._reading = asyncio.create_task(self._read())
        self._logging = asyncio.create_task(self._log_stderr())

    async def fork(self, request: messages.Fork, fds: list[int], child: ZygoteChild) -> None:
        """Ask for a fork; sets ``child.pid`` once the zygote forked."""
        if not self.alive:
            raise ZygoteError("the zygote is gone")
        request_id = next(self._ids)
        forked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forking[request_id] = forked
        try:
            payload = messages.encode(dataclasses.replace(request, id=request_id))
            await self._send(payload, fds)
            child.pid = await forked
        finally:
            self._forking.pop(request_id, None)

    async def _send(self, payload: bytes, fds: list[int]) -> None:
        loop = asyncio.get_running_loop()
        async with self._send_lock:
            while True:
                try:
                    socket.send_fds(self.control, [payload], fds)
                    return
                except (BrokenPipeError, ConnectionError) as exc:  # it died just now
                    raise ZygoteError(f"the zygote is gone: {exc}") from None
                except BlockingIOError:
                    writable = loop.create_future()
                    loop.add_writer(self.control, writable.set_result, None)
                    try:
                        await writable
                    finally:
                        loop.remove_writer(self.control)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while payload := await loop.sock_recv(self.control, 65536):
                self._handle(messages.decode(payload))
        except (OSError, ValueError) as exc:
            log.warning("zygote control socket failed: %s", exc)
        finally:
            self._lost()

    def _handle(self, message: messages.Message) -> None:
        if isinstance(message, messages.Ready) and not self.ready.done():
            self.pid = message.pid
            self.ready.set_result(None)
        elif isinstance(message, messages.Forked | messages.Failed):
            forked = self._forking.get(message.id)
            if forked is None or forked.done():
                return
            if isinstance(message, messages.Forked):
                forked.set_result(message.pid)
            else:
                forked.set_exception(ZygoteError(message.error))

    def _lost(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if not self.ready.done():
            self.ready.set_exception(ZygoteError("exited before it was ready"))
            self.ready.exception()  # retrieved: nobody may be waiting any more
        for forked in self._forking.values():
            if not forked.done():
                forked.set_exception(ZygoteError("the zygote died"))
        self._on_lost(self)

    async def _log_stderr(self) -> None:
        assert self.process.stderr is not None
        with contextlib.suppress(Exception):
            while line := await self.process.stderr.readline():
                log.warning("zygote: %s", line.decode(errors="replace").rstrip())

    async def stop(self) -> None:
        self.control.close()  # the zygote exits when its control socket closes
        self._lost()
        self._reading.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.process.wait()
        self._logging.cancel()


class Zygote:
    """Forks ``runtime``'s workers from one preloaded sandboxed process, (re)started on need."""

    def __init__(self, runtime: Runtime, sandbox: AsyncSandbox) -> None:
        self.runtime = runtime
        self._sandbox = sandbox
        self._current: _Incarnation | None = None
        self._unit: str | None = None
        self._starting = asyncio.Lock()
        self._failed_at: float | None = None
        self._closed = False
        self._restarting: asyncio.Task[None] | None = None

    def usable(self) -> bool:
        """False for a while after the zygote failed to start (spawn workers directly)."""
        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        return self._failed_at is None or loop.time() - self._failed_at > RETRY_AFTER_S

    async def fork(self, unit: str, workdir: Path, protocol_fd: int) -> ZygoteChild:
        """A worker of ``unit`` in ``workdir`` speaking on ``protocol_fd`` (fd is copied)."""
        zygote = await self._running()
        spec = await self._sandbox.fork_spec(unit, workdir, self.runtime.zygote_env())
        fds = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in spec.cgroup_files]
        stderr_read, stderr_write = os.pipe()
        status_read, status_write = os.pipe()
        try:
            stderr = await pipe_reader(stderr_read)
            child = ZygoteChild(stderr, await pipe_reader(status_read))
            request = messages.Fork(
                id=0,  # the incarnation numbers its requests
                workdir=str(workdir),
                env=spec.env,
                rlimits=spec.rlimits,
                network=spec.network,
                tmpfs_size=spec.tmpfs_size,
                keep=spec.keep,
            )
            await zygote.fork(request, [protocol_fd, stderr_write, status_write, *fds], child)
        finally:
            for fd in (stderr_write, status_write, *fds):
                os.close(fd)
        return child

    async def _running(self) -> _Incarnation:
        async with self._starting:
            if self._closed:
                raise ZygoteError("closed")
            if self._current is not None and self._current.alive:
                return self._current
            if self._current is not None:
                await self._retire()
            try:
                self._current = await self._start()
            except Exception as exc:
                self._failed_at = asyncio.get_running_loop().time()
                raise ZygoteError(f"cannot start the {self.name} zygote: {exc}") from exc
            self._failed_at = None
            return self._current

    @property
    def name(self) -> str:
        return self.runtime.name

    async def _start(self) -> _Incarnation:
        unit = f"zygote{os.getpid()}-{next(_units)}"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        started = asyncio.get_running_loop().time()
        try:
            argv = self.runtime.zygote_argv(theirs.fileno())
            assert argv is not None, f"{self.name} has no zygote"
            wrapped, env = await self._sandbox.zygote_command(
                argv, unit=unit, env=self.runtime.zygote_env()
            )
            self._unit = unit
            process = await placement.spawn(
                *wrapped,
                env=env,
                cwd="/",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=[theirs.fileno()],
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            await self._sandbox.release(unit)
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote = _Incarnation(process, ours, self._lost)
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                await zygote.ready
        except BaseException:
            await self._sandbox.release(unit)
            await zygote.stop()
            raise
        elapsed = asyncio.get_running_loop().time() - started
        log.info("%s zygote ready in %.2f s (pid %s)", self.name, elapsed, zygote.pid)
        return zygote

    def _lost(self, current: _Incarnation) -> None:
        """The running zygote died: say so, and start the next one now, not on demand."""
        if self._closed or current is not self._current:
            return
        log.warning(
            "%s zygote (pid %s) died; the workers it forked live on; starting a new one",
            self.name,
            current.pid,
        )
        self._restarting = asyncio.create_task(self._restart())

    async def _restart(self) -> None:
        with contextlib.suppress(ZygoteError):
            await self._running()

    async def _retire(self) -> None:
        if self._current is not None:
            await self._current.stop()
            self._current = None
        if self._unit is not None:
            await self._sandbox.release(self._unit)
            self._unit = None

    async def close(self) -> None:
        """Stop the zygote (the workers it forked live on until they are killed)."""
        async with self._starting:
            self._closed = True
            await self._retire()
