"""The server's child processes (cellbox/process/child.py): pipes, exit statuses, signals,
on the server's loop (uvloop) and on asyncio's own."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from cellbox.process import child
from cellbox.process.child import PIPE

LOOPS = {"uvloop": uvloop.run, "asyncio": asyncio.run}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    return lambda main: LOOPS[request.param](main())


def open_fds(run: Callable[[Callable[[], Awaitable[Any]]], Any]) -> set[int]:
    """This process's open fds, once a loop of the kind has run (uvloop keeps a few of its
    own for good after its first run)."""

    async def nothing() -> None:
        pass

    run(nothing)
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def test_communicate_writes_stdin_and_reads_both_outputs(run) -> None:
    script = "import sys; data = sys.stdin.read(); print(data.upper()); sys.stderr.write('e'); sys.exit(3)"

    async def main() -> tuple[bytes | None, bytes | None, int | None]:
        process = await child.start(
            sys.executable, "-c", script, stdin=PIPE, stdout=PIPE, stderr=PIPE
        )
        out, err = await process.communicate(b"x" * 200_000)  # more than a pipe holds
        return out, err, process.returncode

    before = open_fds(run)
    out, err, code = run(main)
    assert out == b"X" * 200_000 + b"\n" and err == b"e" and code == 3
    assert open_fds(run) == before  # every end of every pipe closed


def test_a_stream_that_is_not_a_pipe_reads_as_none(run) -> None:
    async def main() -> tuple[bytes | None, bytes | None]:
        process = await child.start("true", stdout=PIPE, stderr=asyncio.subprocess.DEVNULL)
        return await process.communicate()

    assert run(main) == (b"", None)


def test_stderr_is_an_asyncio_reader_until_the_end(run) -> None:
    async def main() -> list[bytes]:
        process = await child.start("sh", "-c", "echo one >&2; echo two >&2", stderr=PIPE)
        assert process.stderr is not None
        lines = [line async for line in process.stderr]
        assert await process.wait() == 0
        return lines

    assert run(main) == [b"one\n", b"two\n"]


def test_kill_gives_the_signal_as_a_negative_status_and_is_harmless_after_the_end(run) -> None:
    async def main() -> tuple[int | None, int, int]:
        process = await child.start("sleep", "30", start_new_session=True)
        assert process.returncode is None
        process.kill()
        code = await process.wait()
        process.kill()  # ended and reaped: nothing is signalled (its pid may be reused)
        again = await process.wait()
        return process.returncode, code, again

    assert run(main) == (-signal.SIGKILL, -signal.SIGKILL, -signal.SIGKILL)


def test_a_child_that_ended_before_it_was_watched_is_seen(run) -> None:
    async def main() -> int:
        process = await child.start("true")
        await asyncio.sleep(0.2)  # long over (a zombie) before the loop looks
        return await process.wait()

    assert run(main) == 0


def test_a_program_that_cannot_start_raises_and_leaks_nothing(run) -> None:
    async def main() -> None:
        await child.start("/nonexistent/program", stdin=PIPE, stdout=PIPE, stderr=PIPE)

    before = open_fds(run)
    with pytest.raises(FileNotFoundError):
        run(main)
    assert open_fds(run) == before


def test_passed_fds_and_the_working_directory_reach_the_child(run, tmp_path) -> None:
    async def main() -> bytes | None:
        read_end, write_end = os.pipe()
        try:
            script = f"import os; os.write({write_end}, os.getcwd().encode())"
            process = await child.start(
                sys.executable, "-c", script, pass_fds=[write_end], cwd=str(tmp_path)
            )
        finally:
            os.close(write_end)
        await process.wait()
        with os.fdopen(read_end, "rb") as pipe:
            return pipe.read()

    assert run(main) == str(tmp_path).encode()


def test_without_pidfds_a_thread_waits_for_the_end(run, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(pid: int) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open is not available")

    monkeypatch.setattr(os, "pidfd_open", refused)

    async def main() -> tuple[int, int | None]:
        process = await child.start("sh", "-c", "exit 7")
        return await process.wait(), process.returncode

    assert run(main) == (7, 7)
