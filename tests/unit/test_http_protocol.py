"""What the server writes in one event-loop iteration goes out in one send, at its end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cellbox.api.http_protocol import _WritesPerIteration

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recording:
    """A transport that keeps what is sent on it, one entry per send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closing = False

    def writelines(self, pieces: list[bytes]) -> None:
        self.sent.append(b"".join(pieces))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


Steps = Callable[[_WritesPerIteration, Recording], Awaitable[None]]


def _run(steps: Steps) -> Recording:
    async def main() -> Recording:
        transport = Recording()
        await steps(_WritesPerIteration(transport, asyncio.get_running_loop()), transport)  # type: ignore[arg-type]
        return transport

    return asyncio.run(main())


def test_a_head_and_its_body_go_out_as_one_send_once_the_iteration_is_over() -> None:
    async def steps(wrapped: _WritesPerIteration, transport: Recording) -> None:
        wrapped.write(HEAD)
        wrapped.write(b"{}")
        assert transport.sent == []  # the request's own code finishes first
        await asyncio.sleep(0)
        assert transport.sent == [HEAD + b"{}"]

    _run(steps)


def test_what_later_iterations_write_goes_out_in_sends_of_its_own() -> None:
    async def steps(wrapped: _WritesPerIteration, transport: Recording) -> None:
        wrapped.write(HEAD)
        await asyncio.sleep(0)
        assert transport.sent == [HEAD]  # a stream's head does not wait for its first event
        await asyncio.sleep(0.01)
        wrapped.write(b"data: 1\n\n")
        await asyncio.sleep(0)

    assert _run(steps).sent == [HEAD, b"data: 1\n\n"]


def test_closing_sends_what_waits_first_and_a_closed_transport_gets_nothing() -> None:
    async def steps(wrapped: _WritesPerIteration, transport: Recording) -> None:
        wrapped.write(HEAD)
        wrapped.write(b"{}")
        wrapped.close()
        assert transport.sent == [HEAD + b"{}"] and transport.closing
        wrapped.write(HEAD)  # after the peer went away: dropped
        await asyncio.sleep(0)

    assert _run(steps).sent == [HEAD + b"{}"]


def test_everything_else_is_the_transport_own() -> None:
    async def steps(wrapped: _WritesPerIteration, transport: Recording) -> None:
        assert wrapped.is_closing() is False
        transport.closing = True
        assert wrapped.is_closing() is True

    _run(steps)
