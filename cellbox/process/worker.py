"""One running worker process: started in the sandbox, spoken to over its protocol socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cellbox import deaths, protocol
from cellbox.deaths import Death
from cellbox.placement import placement
from cellbox.process.child import Child
from cellbox.process.frame_stream import FrameStream
from cellbox.process.sandbox_calls import AsyncSandbox
from cellbox.process.zygote_client import Zygote
from cellbox.runtimes import Runtime
from cellbox.sandbox.link import Link

log = logging.getLogger("cellbox.worker")

STARTUP_TIMEOUT_S = 30.0
KILL_WAIT_S = 10.0  # a killed worker that has not ended by then is reported, not waited for
_STDERR_TAIL = 4096
_FATAL_PREFIXES = ("FATAL ERROR:", "Fatal Python error:", "Segmentation fault")
_units = itertools.count(1)


class WorkerStartError(RuntimeError):
    """The worker process did not come up."""


class ProcessHandle(Protocol):
    """What a worker needs of its process: spawned (asyncio) or forked by a zygote."""

    pid: int
    returncode: int | None
    stderr: asyncio.StreamReader | None

    async def wait(self) -> int | None: ...


class WorkerProcess:
    """A worker's process, its socket, and the frames it sends (``None`` once it is gone).

    Its end is noticed when it happens (the socket closing, the process's exit status
    arriving), not by polling: a worker that ends without being killed is ``died``, its
    death is recorded once (:mod:`cellbox.deaths`) and what is left of its unit is killed.
    """

    def __init__(
        self,
        runtime: Runtime,
        sandbox: AsyncSandbox,
        unit: str,
        process: ProcessHandle,
        stream: FrameStream,
    ) -> None:
        self.runtime = runtime
        self.unit = unit
        self.process = process
        self.frames = stream.frames
        self.owner = "the warm pool"  # who holds it, for the log: a context id once taken
        self.on_death: Callable[[], None] | None = None  # told once if it dies
        self._died = False
        self._sandbox = sandbox
        self.network: Link | None = None  # its own namespace's link, when it has one
        self._stream = stream
        stream.on_end = self._ended
        stream.on_bad_frame = self._bad_frame
        self._stderr_tail = b""
        self._killed = False
        self._misbehaved: Death | None = None  # it broke the protocol, so it was killed
        self._death: asyncio.Future[Death] | None = None
        self._burying: asyncio.Task[None] | None = None
        self._killing: asyncio.Task[None] | None = None
        self._draining = asyncio.create_task(self._drain_stderr())
        self._watching = asyncio.create_task(self._end_with_process())

    @classmethod
    async def start(
        cls,
        runtime: Runtime,
        sandbox: AsyncSandbox,
        workdir: Path,
        cwd: str | None = None,
        zygote: Zygote | None = None,
        *,
        own_network: bool | None = None,
    ) -> WorkerProcess:
        """Start a worker in ``workdir`` (forked by ``zygote`` if given), wait until ready.

        ``own_network``: spawn it in a network namespace of its own (None: as the server's
        mode says).
        """
        unit = f"w{os.getpid()}-{next(_units)}"
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process: ProcessHandle
            if zygote is not None:
                process = await zygote.fork(unit, workdir, theirs.fileno())
            else:
                process = await _spawn(
                    runtime, sandbox, unit, workdir, theirs.fileno(), own_network
                )
        except BaseException:
            ours.close()
            await sandbox.release(unit)
            raise
        finally:
            theirs.close()
        stream = FrameStream()
        await asyncio.get_running_loop().create_unix_connection(lambda: stream, sock=ours)
        worker = cls(runtime, sandbox, unit, process, stream)
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                first = await worker.frames.get()
            if first is None or first.get("type") != "ready":
                raise WorkerStartError(await worker.exit_reason())
            if cwd is not None:
                await worker.change_directory(cwd)
        except BaseException as exc:
            await worker.kill()
            if isinstance(exc, TimeoutError):
                raise WorkerStartError(
                    f"worker did not start within {STARTUP_TIMEOUT_S:.0f} s"
                ) from None
            raise
        return worker

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self._killed and not self.died and self._misbehaved is None

    @property
    def died(self) -> bool:
        """It ended without being killed by us (known as soon as the socket closed or
        the exit status arrived, whichever came first)."""
        return self._died or (not self._killed and self.process.returncode is not None)

    def _bad_frame(self, exc: Exception) -> None:
        # The code runs in the worker's process and can write to this socket: past a frame
        # that breaks the protocol, nothing it sends can be trusted to be in step.
        if self._misbehaved is None and not self._killed and not self._died:
            self._misbehaved = Death(
                deaths.MISBEHAVED,
                f"misbehaved (it sent {exc} on its control socket, which the code it runs "
                "may have written to) and was killed",
            )
            deaths.record(self.runtime.name, self._misbehaved, self.owner, self.pid)
            if self.on_death is not None:
                self.on_death()
        self._killing = asyncio.create_task(self.kill())

    async def _end_with_process(self) -> None:
        # Whatever ends the process (for a zygote child: its setup process), nothing of the
        # worker may live on unseen.
        with contextlib.suppress(Exception):
            await self.process.wait()
        self._ended()

    def _ended(self) -> None:
        """The socket closed or the process ended: unless we killed it, a death."""
        if not self._killed and not self._died:
            self._died = True
            self._burying = asyncio.create_task(self._bury())
            if self.on_death is not None:
                self.on_death()

    async def _bury(self) -> None:
        await self.death()
        await self.kill()

    async def _drain_stderr(self) -> None:
        # The worker's own diagnostics (before it captured fd 2, or a fatal error); user
        # output never comes this way. Keep only the tail, for error messages.
        assert self.process.stderr is not None
        with contextlib.suppress(Exception):
            while chunk := await self.process.stderr.read(65536):
                tail = self._stderr_tail + chunk
                if len(tail) > _STDERR_TAIL:  # whole lines only
                    tail = tail[-_STDERR_TAIL:].partition(b"\n")[2]
                self._stderr_tail = tail

    def send(self, message: dict[str, Any]) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                self._stream.write(protocol.encode(message))

    def interrupt(self) -> None:
        self.send({"op": "interrupt"})

    def limit_frames(self, limit: int) -> None:
        """Frames longer than ``limit`` are skipped unread (see :class:`FrameStream`)."""
        self._stream.limit = limit

    def wake(self) -> None:
        """Wake whoever waits on ``frames`` without a frame (a ``{"type": "wake"}`` marker)."""
        self.frames.put_nowait({"type": "wake"})

    async def change_directory(self, path: str) -> None:
        """Make ``path`` the worker's working directory; ``ValueError`` if it cannot be."""
        self.send({"op": "chdir", "path": path})
        reply = await self.frames.get()
        if reply is None:
            raise WorkerStartError(await self.exit_reason())
        if reply.get("type") != "chdir" or not reply.get("ok"):
            raise ValueError(reply.get("error") or f"cannot change directory to {path}")

    async def kill(self) -> None:
        """Kill the worker and every process it started."""
        if not self._killed and self.process.returncode is not None:
            self._ended()  # it had ended on its own already: still a death to record
        if not self._killed:
            self._killed = True
            if isinstance(self.process, Child):
                # a zygote's child is reaped by the zygote (its pid may be reused by now);
                # the unit's cgroup holds all of it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            await self._sandbox.release(self.unit)
            self._stream.close()
            if self.network is not None:
                await self.network.close()
        try:
            async with asyncio.timeout(KILL_WAIT_S):
                await self.process.wait()
        except TimeoutError:  # the sandbox logged which processes survive; answer anyway
            log.error("worker %s did not end within %g s of being killed", self.unit, KILL_WAIT_S)
        except Exception:
            log.debug("waiting for worker %s failed", self.unit, exc_info=True)

    async def exit_reason(self) -> str:
        """How the worker died, in words (waits for the process to end)."""
        return (await self.death()).with_output()

    async def death(self) -> Death:
        """How the worker ended (waits up to 2 s for its exit status); worked out once."""
        if self._death is None:
            self._death = asyncio.ensure_future(self._classify())
        return await asyncio.shield(self._death)

    async def _classify(self) -> Death:
        if self._misbehaved is not None:
            return self._misbehaved
        died = self.died  # on its own, not killed by us: a death to record (once, here)
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(2.0):
                await self.process.wait()
        oom = await self._sandbox.oom_killed(self.unit)
        tail = self._stderr_tail.decode("utf-8", "replace").strip()
        death = deaths.classify(
            self.process.returncode,
            oom=oom,
            heap_oom="JavaScript heap out of memory" in tail,
            signal_offset=self._sandbox.wraps_exit_status,
        )
        # A runtime's own fatal message says more than the stack dump printed after it.
        fatal = [line for line in tail.splitlines() if line.startswith(_FATAL_PREFIXES)]
        if fatal:
            death = Death(death.cause, f"{death.reason}; {fatal[-1].strip()}")
        elif tail:
            death = Death(death.cause, death.reason, deaths.last_words(tail))
        if died:
            deaths.record(self.runtime.name, death, self.owner, self.pid)
        return death


async def _spawn(
    runtime: Runtime,
    sandbox: AsyncSandbox,
    unit: str,
    workdir: Path,
    fd: int,
    own_network: bool | None,
) -> Child:
    """Start the runtime's worker program through the sandbox chain."""
    argv, env = await sandbox.command(
        runtime.argv(fd, sandbox.limits.memory_bytes),
        unit=unit,
        workdir=workdir,
        env=runtime.env(),
        own_network=own_network,
    )
    return await placement.spawn(
        *argv,
        env=env,
        cwd=str(workdir),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=[fd],
        start_new_session=True,
    )
