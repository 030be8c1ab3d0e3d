"""The server's main loop (cellbox.graceful): one tick a second, woken at once to stop."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn

from cellbox.graceful import GracefulServer


async def _app(scope: dict, receive: object, send: object) -> None:  # never called
    raise AssertionError("no request is served here")


def _server() -> GracefulServer:
    async def drain() -> None:
        pass

    return GracefulServer(uvicorn.Config(_app), drain=drain, hurry=lambda: None)


def test_the_main_loop_ticks_once_a_second_and_stops_at_once_when_asked() -> None:
    server = _server()
    ticks: list[float] = []
    refresh = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(time.monotonic())
        assert counter % 10 == 0  # each tick refreshes the Date header
        return await refresh(counter)

    server.on_tick = counted  # type: ignore[method-assign]

    async def run() -> float:
        server._loop = asyncio.get_running_loop()
        asked = 0.0

        def ask() -> None:  # as uvicorn's signal handler does, from outside the loop's code
            nonlocal asked
            asked = time.monotonic()
            server.should_exit = True

        threading.Timer(2.5, ask).start()
        await server.main_loop()
        return time.monotonic() - asked

    stopped_after = asyncio.run(run())
    assert stopped_after < 0.6  # woken, not at the next tick
    assert 2 <= len(ticks) <= 4  # at 0, 1 and 2 s, and the one that sees the request
    assert all(b - a >= 0.9 for a, b in zip(ticks[:-2], ticks[1:-1], strict=True))


def test_a_stop_asked_before_the_loop_runs_ends_it_at_its_first_tick() -> None:
    server = _server()
    server.should_exit = True

    async def run() -> None:
        server._loop = asyncio.get_running_loop()
        await asyncio.wait_for(server.main_loop(), 1)

    asyncio.run(run())
