"""Fifo: items in order to a waiting reader, and a reader that gives up loses nothing."""

from __future__ import annotations

import asyncio

import pytest

from cellbox.fifo import Fifo


def test_items_come_out_in_order_and_wake_the_reader() -> None:
    async def main() -> list[int]:
        fifo: Fifo[int] = Fifo()
        reader = asyncio.ensure_future(asyncio.gather(fifo.get(), fifo.get(), fifo.get()))
        await asyncio.sleep(0)
        for item in (1, 2, 3):
            fifo.put_nowait(item)
        return await reader

    assert asyncio.run(main()) == [1, 2, 3]


def test_a_reader_cancelled_while_waiting_leaves_the_next_one_working() -> None:
    async def main() -> int:
        fifo: Fifo[int] = Fifo()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await fifo.get()
        later = asyncio.ensure_future(fifo.get())
        await asyncio.sleep(0)
        fifo.put_nowait(7)
        return await later

    assert asyncio.run(main()) == 7


def test_taken_is_told_of_each_item_and_sizes_follow() -> None:
    async def main() -> tuple[list[int], int]:
        taken: list[int] = []
        fifo: Fifo[str] = Fifo(lambda: taken.append(fifo.qsize()))
        fifo.put_nowait("a")
        fifo.put_nowait("b")
        assert fifo.qsize() == 2 and not fifo.empty()
        assert fifo.get_nowait() == "a"
        assert await fifo.get() == "b"
        with pytest.raises(IndexError):
            fifo.get_nowait()
        return taken, fifo.qsize()

    assert asyncio.run(main()) == ([1, 0], 0)
