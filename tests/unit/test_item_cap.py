"""The rich item cap (pure) and the frame stream's skipping of frames too long to keep."""

from __future__ import annotations

import asyncio

import pytest

from cellbox import protocol
from cellbox.events import ItemCap
from cellbox.process.frame_stream import FrameStream


def test_items_are_kept_whole_while_they_fit_and_the_rest_counted():
    cap = ItemCap(100)
    assert cap.admit(60) and cap.admit(40)  # exactly full
    assert not cap.admit(1)
    assert cap.finish()[0]["data"].endswith("1 item was dropped (1 bytes)")


def test_a_smaller_item_still_fits_after_a_bigger_one_did_not():
    cap = ItemCap(100)
    assert not cap.admit(500)  # larger than the whole cap
    assert cap.admit(30) and not cap.admit(80) and cap.admit(70)
    assert cap.kept == 100
    (note,) = cap.finish()
    assert note["type"] == "stderr"
    assert note["data"] == (
        "[cellbox] rich output limit of 100 bytes reached: 2 items were dropped (580 bytes)"
    )


def test_nothing_dropped_says_nothing():
    cap = ItemCap(10)
    assert cap.admit(10)
    assert cap.finish() == []


LIMIT = 1000
BIG = {"type": "display", "id": 1, "bundle": {"text/html": "x" * 5000}}
MESSAGES = [
    {"type": "stdout", "id": 1, "text": "before"},
    {"type": "display", "id": 1, "bundle": {"text/plain": "small"}},
    BIG,
    {"type": "error", "id": 1, "name": "E", "value": "v" * 2000, "traceback": ""},
    {"type": "done", "id": 1},
]


def frames_of(chunks: list[bytes]) -> list:
    async def scenario() -> list:
        stream = FrameStream(limit=LIMIT)
        for chunk in chunks:
            stream.data_received(chunk)
            assert len(stream._pending) <= 4 + LIMIT  # never more than a frame it keeps
        frames = []
        while not stream.frames.empty():
            frames.append(stream.frames.get_nowait())
        return frames

    return asyncio.run(scenario())


@pytest.mark.parametrize("size", [1, 3, 5, 64, 67, 68, 999, 4096, 1 << 20])
def test_frames_past_the_limit_are_skipped_unread_however_split(size: int):
    data = b"".join(protocol.encode(m) for m in MESSAGES)
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    big = len(protocol.encode(BIG)) - 4
    error = len(protocol.encode(MESSAGES[3])) - 4
    small = len(protocol.encode(MESSAGES[1])) - 4
    assert frames_of(chunks) == [
        {"type": "stdout", "id": 1, "text": "before"},
        {"type": "display", "id": 1, "bundle": {"text/plain": "small"}, "bytes": small},
        {"type": "oversized", "kind": "display", "bytes": big},
        {"type": "oversized", "kind": "error", "bytes": error},
        {"type": "done", "id": 1},
    ]


def test_a_forged_oversized_frame_is_told_as_unknown():
    payload = b"[" + b"1," * 1000 + b"1]"
    frame = len(payload).to_bytes(4, "big") + payload
    assert frames_of([frame, protocol.encode({"type": "done", "id": 1})]) == [
        {"type": "oversized", "kind": "unknown", "bytes": len(payload)},
        {"type": "done", "id": 1},
    ]
