"""The asyncio SDK against the real server: the same calls and errors as the blocking one."""

from __future__ import annotations

import asyncio
import time

import pytest

from cellbox.client import (
    AsyncClient,
    ConnectionFailed,
    ContextNotFound,
    Error,
    Exit,
    InvalidRequest,
    RequestTimeout,
    Stdout,
    Unauthorized,
)
from tests.conftest import STARTED


def run(coroutine):
    return asyncio.run(coroutine)


def test_execute_and_contexts(server):
    async def scenario():
        async with AsyncClient(server.url, server.token) as client:
            first = await client.execute("print('hi')\n1 + 1", language="py")
            assert (first.text, first.stdout, first.execution_count) == ("2", "hi\n", 1)
            await client.contexts.delete(first.context_id)

            ctx = await client.contexts.create("typescript")
            assert ctx.language == "typescript"
            assert ctx.id in [c.id for c in await client.contexts.list()]
            assert (await client.contexts.get(ctx.id)).info == ctx.info
            await ctx.execute("let n: number = 4")
            assert (await client.execute("n * 2", context=ctx)).text == "8"
            env = await ctx.execute("process.env.X", env={"X": "y"})
            assert env.text == "'y'"
            timed_out = await ctx.execute("while (true) {}", timeout=0.5)
            assert timed_out.error is not None and timed_out.error.name == "TimeoutError"
            await ctx.restart()
            gone = await ctx.execute("n")
            assert gone.error is not None and gone.execution_count == 1
            await ctx.delete()
            with pytest.raises(ContextNotFound):
                await client.contexts.get(ctx.id)

    run(scenario())


def test_stream_is_incremental(server):
    async def scenario():
        async with AsyncClient(server.url, server.token) as client:
            code = "import time\nprint('a', flush=True)\ntime.sleep(1)\nprint('b')\n1/0"
            arrivals = []
            async with client.stream(code) as stream:
                async for event in stream:
                    arrivals.append((time.monotonic(), event))
            events = [event for _, event in arrivals]
            assert [type(event) for event in events] == [Stdout, Stdout, Error, Exit]
            assert arrivals[-1][0] - arrivals[0][0] > 0.8
            assert stream.execution is not None and stream.execution.logs.stdout == ["a", "b"]
            await client.contexts.delete(stream.execution.context_id)

    run(scenario())


def test_context_manager_interrupt_and_cleanup(server):
    async def scenario():
        async with AsyncClient(server.url, server.token) as client:
            async with client.contexts.create() as ctx:
                await ctx.execute("kept = 3")
                code = STARTED["python"] + "import time\ntime.sleep(30)"
                running = asyncio.create_task(ctx.execute(code))
                with server.client() as http:
                    await asyncio.to_thread(http.wait_started, ctx.id)
                await ctx.interrupt()
                interrupted = await running
                assert interrupted.error is not None
                assert interrupted.error.name == "KeyboardInterrupt"
                assert (await ctx.stream("kept").result()).text == "3"
            with pytest.raises(ContextNotFound):
                await client.contexts.get(ctx.id)

    run(scenario())


def test_errors(server, misbehaving):
    async def scenario():
        async with AsyncClient(server.url, server.token) as client:
            with pytest.raises(InvalidRequest) as caught:
                await client.execute("1", timeout=0)
            assert [e.field for e in caught.value.errors] == ["timeout_ms"]
            with pytest.raises(ContextNotFound):
                async for _ in client.stream("1", context="ctx_missing"):
                    pass
            with pytest.raises(ContextNotFound):
                await client.contexts.interrupt("ctx_missing")
        async with AsyncClient(server.url, "wrong") as client:
            with pytest.raises(Unauthorized):
                await client.contexts.list()
        async with AsyncClient(misbehaving(None), "t", timeout=0.5) as client:
            with pytest.raises(RequestTimeout):
                await client.contexts.list()
        async with AsyncClient(misbehaving(b""), "t") as client:
            with pytest.raises(ConnectionFailed):
                await client.contexts.list()

    run(scenario())


def test_a_loss_told_on_a_stream_is_heard(server):
    async def scenario():
        async with AsyncClient(server.url, server.token) as client:
            async with client.contexts.create() as ctx:
                died = await ctx.stream("import os; os.kill(os.getpid(), 9)").result()
                assert died.error is not None and died.error.name == "ContextDied"
                after = await ctx.stream("1 + 1").result()
                assert (after.error, after.text) == (None, "2")

    run(scenario())
