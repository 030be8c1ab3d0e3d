"""FrameStream: frames out of bytes however the socket splits them."""

from __future__ import annotations

import asyncio

import pytest

from cellbox import protocol
from cellbox.process.frame_stream import PAUSE_AT, RESUME_AT, FrameStream

MESSAGES = [{"type": "stdout", "id": 1, "text": "x" * n} for n in (0, 1, 5, 70_000)]
MESSAGES.append({"type": "done", "id": 1})


def drained(stream: FrameStream) -> list:
    frames = []
    while not stream.frames.empty():
        frames.append(stream.frames.get_nowait())
    return frames


async def fed(chunks: list[bytes]) -> FrameStream:
    stream = FrameStream()
    for chunk in chunks:
        stream.data_received(chunk)
    return stream


@pytest.mark.parametrize("size", [1, 3, 4, 7, 4096, 1 << 20])
def test_any_split_gives_the_same_frames(size: int) -> None:
    data = b"".join(protocol.encode(m) for m in MESSAGES)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    stream = asyncio.run(fed(chunks))
    assert drained(stream) == MESSAGES


def test_a_frame_over_the_limit_is_reported_once_and_the_rest_ignored() -> None:
    bad: list[Exception] = []

    async def scenario() -> FrameStream:
        stream = FrameStream()
        stream.on_bad_frame = bad.append
        stream.data_received(protocol.encode({"type": "ready"}))
        stream.data_received((protocol.MAX_FRAME + 1).to_bytes(4, "big") + b"{}")
        stream.data_received(protocol.encode({"type": "done", "id": 1}))
        return stream

    stream = asyncio.run(scenario())
    assert drained(stream) == [{"type": "ready"}]
    assert len(bad) == 1 and "frame of" in str(bad[0])


def test_undecodable_payload_is_a_bad_frame() -> None:
    bad: list[Exception] = []

    async def scenario() -> FrameStream:
        stream = FrameStream()
        stream.on_bad_frame = bad.append
        stream.data_received(len(b"{nope").to_bytes(4, "big") + b"{nope")
        return stream

    asyncio.run(scenario())
    assert len(bad) == 1


def test_the_end_puts_none_and_tells() -> None:
    ended: list[bool] = []

    async def scenario() -> FrameStream:
        stream = FrameStream()
        stream.on_end = lambda: ended.append(True)
        stream.data_received(protocol.encode({"type": "done"})[:3])  # half a header
        stream.connection_lost(None)
        return stream

    stream = asyncio.run(scenario())
    assert drained(stream) == [None]
    assert ended == [True]


class Transport:
    """Records whether reading is paused."""

    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False


def test_reading_pauses_while_too_many_frames_wait() -> None:
    # A worker's code can write frames to its socket while no execution takes them.
    frame = protocol.encode({"type": "stdout", "id": 0, "text": "flood"})

    async def scenario() -> None:
        stream = FrameStream()
        transport = Transport()
        stream.connection_made(transport)  # type: ignore[arg-type]
        stream.data_received(frame * PAUSE_AT)
        assert not transport.paused
        stream.data_received(frame * 10)
        assert transport.paused
        while stream.frames.qsize() > RESUME_AT + 1:
            await stream.frames.get()
        assert transport.paused
        stream.frames.get_nowait()
        assert not transport.paused and stream.frames.qsize() == RESUME_AT

    asyncio.run(scenario())
