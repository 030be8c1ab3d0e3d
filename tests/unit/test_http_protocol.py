"""What the server writes in one event-loop iteration goes out in one send, at its end,
and a whole answer at once."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from cellbox.api.http_protocol import HttpProtocol, _WritesPerIteration

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


def test_a_whole_answer_goes_out_before_the_request_code_that_follows_it() -> None:
    """The app, its answer sent, holds the event loop until the client has read the answer:
    a server that sent it only at the end of the loop's iteration would never get there."""
    received = threading.Event()
    read_while_held: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"{}"})
        read_while_held.append(received.wait(10))  # (blocks the loop: the rest of the request)

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", http=HttpProtocol, log_level="warning")
    server = uvicorn.Server(config)
    serving = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    serving.start()
    try:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        client.request("GET", "/")
        body = client.getresponse().read()
        received.set()
        client.close()
    finally:
        server.should_exit = True
        serving.join(30)
        listener.close()
    assert body == b"{}"
    assert read_while_held == [True]
