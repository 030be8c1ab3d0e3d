"""A response's head goes out with its body: one send for a JSON answer, never held back."""

from __future__ import annotations

import asyncio

from cellbox.api.http_protocol import _HeadWithBody

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recording:
    """A transport that keeps what is written to it, one entry per send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def _run(steps) -> Recording:  # type: ignore[no-untyped-def]
    async def main() -> Recording:
        transport = Recording()
        await steps(_HeadWithBody(transport, asyncio.get_running_loop()), transport)
        return transport

    return asyncio.run(main())


def test_a_head_and_the_body_written_after_it_go_out_as_one_send() -> None:
    async def steps(wrapped: _HeadWithBody, transport: Recording) -> None:
        wrapped.write(HEAD)
        assert transport.sent == []
        wrapped.write(b"{}")
        await asyncio.sleep(0)

    assert _run(steps).sent == [HEAD + b"{}"]


def test_a_head_whose_body_comes_later_goes_out_at_the_end_of_the_loop_iteration() -> None:
    async def steps(wrapped: _HeadWithBody, transport: Recording) -> None:
        wrapped.write(HEAD)
        await asyncio.sleep(0)
        assert transport.sent == [HEAD]
        await asyncio.sleep(0.01)  # a stream's first event, later
        wrapped.write(b"data: 1\n\n")

    assert _run(steps).sent == [HEAD, b"data: 1\n\n"]


def test_writes_that_are_no_head_are_sent_at_once() -> None:
    async def steps(wrapped: _HeadWithBody, transport: Recording) -> None:
        wrapped.write(b"chunk one")
        assert transport.sent == [b"chunk one"]
        wrapped.write(b"chunk two")

    assert _run(steps).sent == [b"chunk one", b"chunk two"]


def test_closing_sends_a_waiting_head_first_and_a_closed_transport_gets_nothing() -> None:
    async def steps(wrapped: _HeadWithBody, transport: Recording) -> None:
        wrapped.write(HEAD)
        wrapped.close()
        assert transport.sent == [HEAD] and transport.closing
        wrapped.write(HEAD)  # a head after the peer went away: the flush drops it
        await asyncio.sleep(0)

    assert _run(steps).sent == [HEAD]


def test_everything_else_is_the_transport_own() -> None:
    async def steps(wrapped: _HeadWithBody, transport: Recording) -> None:
        assert wrapped.is_closing() is False
        transport.closing = True
        assert wrapped.is_closing() is True

    _run(steps)
