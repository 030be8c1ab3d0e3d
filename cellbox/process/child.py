"""The server's child processes, started without copying the server.

``asyncio.create_subprocess_exec`` under uvloop starts a child with libuv, which forks: the
event loop's thread stops while the kernel copies the server's page tables (2.3 ms p50 in
a process holding the server's imports, 3.8 ms with 100 MB more touched), and every
request in flight waits that long. A pool refill starts two or three processes (``nft``
through ``nsenter``, ``slirp4netns``, a TypeScript worker), so the first cells of a new
context, whose creation refills the pool, took 4-7 ms each time one landed.
``subprocess.Popen`` starts the child with ``vfork`` (CPython does when no ``preexec_fn``,
user or group change is asked for): 0.07 ms. The child's end is watched on the event
loop through a pidfd; its pipes are asyncio streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from typing import Any

PIPE = subprocess.PIPE


class Child:
    """A running child: what the server uses of ``asyncio.subprocess.Process``."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: int | None,
        stdout: asyncio.StreamReader | None,
        stderr: asyncio.StreamReader | None,
    ) -> None:
        self.pid = popen.pid
        self.stdout = stdout
        self.stderr = stderr
        self._popen = popen
        self._stdin = stdin  # our end of its stdin pipe, written by ``communicate``
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        try:
            # (a pidfd of a child that has exited already, a zombie, is readable at once)
            self._pidfd = os.pidfd_open(popen.pid)
        except OSError:  # a kernel before 5.3, or a filter that forbids it: a thread waits
            self._pidfd = -1
            threading.Thread(target=self._wait_in_thread, args=(loop,), daemon=True).start()
        else:
            loop.add_reader(self._pidfd, self._on_exit, loop)

    @property
    def returncode(self) -> int | None:
        """The exit status once the end was seen; ``-N`` for signal N (as ``Popen``)."""
        return self._popen.returncode

    def _on_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._ended(self._popen.wait())  # it has ended: reaps it at once

    def _wait_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        code = self._popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._ended, code)

    def _ended(self, code: int) -> None:
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        """Wait for the child to end; its exit status."""
        return await asyncio.shield(self._exited)

    def send_signal(self, signum: int) -> None:
        """Signal the child, unless its end was seen already (its pid may be reused)."""
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def communicate(self, input: bytes | None = None) -> tuple[bytes | None, bytes | None]:
        """Write ``input`` to its stdin (then close it), read its output to the end, wait
        for it to end; (stdout, stderr), ``None`` for a stream that is not a pipe."""

        async def read(stream: asyncio.StreamReader | None) -> bytes | None:
            return None if stream is None else await stream.read()

        jobs = [read(self.stdout), read(self.stderr)]
        if self._stdin is not None:
            stdin, self._stdin = self._stdin, None
            jobs.append(asyncio.to_thread(_write_and_close, stdin, input or b""))
        out, err = (await asyncio.gather(*jobs))[:2]
        await self.wait()
        return out, err


async def start(program: str, *args: str, **options: Any) -> Child:
    """Start ``program`` (``Popen``'s keyword arguments; ``PIPE`` for stdin, stdout and
    stderr gives an end of a pipe: ``communicate`` writes stdin, ``stdout`` and ``stderr``
    are asyncio readers)."""
    ours: dict[str, int] = {}
    theirs: list[int] = []
    try:
        for name in ("stdin", "stdout", "stderr"):
            if options.get(name) == PIPE:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                child_end, our_end = (
                    (read_end, write_end) if name == "stdin" else (write_end, read_end)
                )
                options[name] = child_end
                ours[name] = our_end
                theirs.append(child_end)
        popen = subprocess.Popen([program, *args], **options)
    except BaseException:
        for fd in ours.values():
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    stdout = await pipe_reader(ours["stdout"]) if "stdout" in ours else None
    stderr = await pipe_reader(ours["stderr"]) if "stderr" in ours else None
    return Child(popen, ours.get("stdin"), stdout, stderr)


def _write_and_close(fd: int, data: bytes) -> None:
    try:
        with contextlib.suppress(BrokenPipeError):  # it ended without reading it all
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class _ClosingAtEnd(asyncio.StreamReaderProtocol):
    """Closes the pipe at its end (uvloop's transport would keep the fd open until closed)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._pipe = transport

    def eof_received(self) -> bool:
        super().eof_received()
        self._pipe.close()  # what was read stays in the reader
        return False


async def pipe_reader(fd: int) -> asyncio.StreamReader:
    """An asyncio reader of the read end ``fd`` of a pipe (which it now owns)."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    # uvloop hands this very fd to libuv, which closes it; were the file object to close it
    # too, the second close could hit whatever reused the number meanwhile (a work directory
    # of the file API, the listening socket). asyncio's own loop closes only the file object.
    libuv_closes = type(loop).__module__.startswith("uvloop")
    await loop.connect_read_pipe(
        lambda: _ClosingAtEnd(reader), os.fdopen(fd, "rb", 0, closefd=not libuv_closes)
    )
    return reader
