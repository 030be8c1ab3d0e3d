"""The asyncio face: :class:`AsyncClient`, its contexts and their files (mirrors ``sync``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Mapping
from typing import Any, TypeVar, overload

import anyio.to_thread
import httpx
from httpx_sse import EventSource

from cellbox.client import calls, core
from cellbox.client.calls import Call
from cellbox.client.errors import (
    APIError,
    CellboxError,
    ConnectionFailed,
    NotFound,
    RequestTimeout,
    StreamClosed,
)
from cellbox.client.models import ContextInfo, Event, Execution, FileInfo, Unpacked, Uploaded

T = TypeVar("T")


class AsyncClient:
    """A cellbox server, spoken to over HTTP from asyncio. Same arguments as :class:`Client`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = core.Config.resolve(url, api_key, timeout)
        self._http = httpx.AsyncClient(**core.client_options(self.config), transport=transport)
        self.contexts = AsyncContexts(self)
        self._server_default = core.ServerDefault()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.config.url!r})"

    # ---- the I/O: sending calls ----

    async def _waiting(self, call: Call[T]) -> Call[T]:
        """``call``, waited for as long as the server's default timeout allows when it is an
        execution that names no timeout of its own (from ``GET /info``, read again after
        ``core.SERVER_DEFAULT_FOR_S``)."""
        if not call.server_timeout:
            return call
        known = self._server_default
        if known.due():
            try:
                known.read(await self.info())
            except RequestTimeout:
                raise  # a server that answers nothing in time would not answer the execution
            except CellboxError:
                pass  # the execution's own request tells what is wrong
        return call.waiting(self.config, known.seconds)

    async def _send(self, call: Call[T], **body: Any) -> T:
        call = await self._waiting(call)
        with core.transport_errors(self.config.url):
            response = core.check(await self._http.send(call.build(self._http, **body)))
        return call.result(response.content, response.status_code)

    async def _open_stream(self, call: Call[Any]) -> httpx.Response:
        call = await self._waiting(call)
        with core.transport_errors(self.config.url):
            response = await self._http.send(call.build(self._http), stream=True)
            if not response.is_success:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                core.check(response)
        return response

    async def _download(self, call: Call[None], dest: core.Destination | None) -> Any:
        response = await self._open_stream(call)
        try:
            with core.transport_errors(self.config.url):
                if dest is None:
                    return await response.aread()
                written = 0
                with core.destination(dest) as file:
                    async for chunk in response.aiter_bytes(core.CHUNK):
                        await anyio.to_thread.run_sync(file.write, chunk)
                        written += len(chunk)
                return written
        finally:
            await response.aclose()

    async def _upload(self, call: Call[T], source: core.Source) -> T:
        opened = core.open_source(source)
        try:
            content = _read_chunks(opened)
            return await self._send(call, content=content, headers=opened.upload_headers())
        except ConnectionFailed as exc:
            if (refused := await self._refused_upload(opened)) is not None:
                raise refused from exc
            raise
        finally:
            opened.close()

    async def _refused_upload(self, opened: core.OpenSource) -> APIError | None:
        try:
            return core.refused_upload(opened, await self.info())
        except CellboxError:
            return None

    # ---- the API ----

    async def execute(
        self,
        code: str,
        *,
        language: str | None = None,
        context: str | AsyncContext | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Execution:
        """Run ``code`` and wait for the whole result; ``timeout`` is in seconds."""
        return await self._send(calls.execute(self.config, code, language, context, env, timeout))

    def stream(
        self,
        code: str,
        *,
        language: str | None = None,
        context: str | AsyncContext | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AsyncExecutionStream:
        """Run ``code``; ``async for`` over the result for its events as they happen."""
        call = calls.stream(calls.execute(self.config, code, language, context, env, timeout))
        return AsyncExecutionStream(self, call)

    async def health(self) -> bool:
        return await self._send(calls.health())

    async def info(self) -> dict[str, Any]:
        return await self._send(calls.info())


async def _read_chunks(opened: core.OpenSource) -> AsyncIterator[bytes]:
    # Local disk reads go to a thread so a slow disk never stalls the event loop.
    while chunk := await anyio.to_thread.run_sync(opened.file.read, core.CHUNK):
        opened.sent += len(chunk)
        yield chunk


class AsyncExecutionStream(core.EventLog):
    """The events of one execution (``async with`` closes it early); see ``ExecutionStream``."""

    def __init__(self, client: AsyncClient, call: Call[None]) -> None:
        super().__init__()
        self._client = client
        self._call = call

    async def __aenter__(self) -> AsyncExecutionStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self) -> httpx.Response:
        if self._response is None:
            self._response = await self._client._open_stream(self._call)
        return self._response

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            if not self._begin_reading():
                return
        except StreamClosed:
            await self.aclose()
            raise
        response = await self._open()
        try:
            with core.transport_errors(self._client.config.url):
                events = EventSource(response).aiter_sse()
                async for sse in events:
                    event = self._read(sse.data)
                    if self._finished(event):
                        async for _ in events:  # the rest: see core.EventLog
                            pass
                        yield event
                        return
                    yield event
            raise ConnectionFailed(core.STREAM_CUT)
        finally:
            await self.aclose()

    async def result(self) -> Execution:
        async for _ in self:
            pass
        assert self.execution is not None
        return self.execution

    async def aclose(self) -> None:
        self._used = True
        if self._response is not None:
            await self._response.aclose()


class AsyncContexts:
    """``client.contexts``: create, list, get and delete contexts."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def create(
        self,
        language: str = "python",
        *,
        cwd: str | None = None,
        network: Any = None,
        packages: list[str] | None = None,
    ) -> ContextCreation:
        """``await`` it for the context, or ``async with`` it to delete the context at the end."""
        call = calls.create_context(self._client.config, language, cwd, network, packages)
        return ContextCreation(self._create(call))

    async def _create(self, call: Call[ContextInfo]) -> AsyncContext:
        return AsyncContext(self._client, await self._client._send(call))

    async def list(self) -> list[AsyncContext]:
        infos = await self._client._send(calls.list_contexts())
        return [AsyncContext(self._client, info) for info in infos]

    async def get(self, context_id: str) -> AsyncContext:
        return AsyncContext(self._client, await self._client._send(calls.get_context(context_id)))

    async def delete(self, context: str | AsyncContext) -> None:
        await self._client._send(calls.delete_context(context))

    async def restart(self, context: str | AsyncContext) -> ContextInfo:
        return await self._client._send(calls.restart_context(context))

    async def interrupt(self, context: str | AsyncContext) -> ContextInfo:
        return await self._client._send(calls.interrupt_context(context))


class ContextCreation:
    """The pending creation of a context: awaitable, or an async context manager."""

    def __init__(self, pending: Any) -> None:
        self._pending = pending
        self._context: AsyncContext | None = None

    def __await__(self) -> Generator[Any, None, AsyncContext]:
        return self._pending.__await__()

    async def __aenter__(self) -> AsyncContext:
        self._context = await self._pending
        return self._context

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if self._context is not None:
            await self._context.__aexit__(kind, exc, tb)


class AsyncContext(core.ContextView):
    """A live context (asyncio). ``async with client.contexts.create() as ctx:`` deletes it."""

    def __init__(self, client: AsyncClient, info: ContextInfo) -> None:
        super().__init__(info)
        self._client = client
        self.files = AsyncFiles(client, info.id)

    async def __aenter__(self) -> AsyncContext:
        return self

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        with core.cleanup_after(exc):
            await self.delete(missing_ok=True)

    async def execute(
        self, code: str, *, env: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> Execution:
        return await self._client.execute(code, context=self.id, env=env, timeout=timeout)

    def stream(
        self, code: str, *, env: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> AsyncExecutionStream:
        return self._client.stream(code, context=self.id, env=env, timeout=timeout)

    async def restart(self) -> AsyncContext:
        self.info = await self._client.contexts.restart(self.id)
        return self

    async def interrupt(self) -> AsyncContext:
        self.info = await self._client.contexts.interrupt(self.id)
        return self

    async def delete(self, *, missing_ok: bool = False) -> None:
        try:
            await self._client.contexts.delete(self.id)
        except NotFound:
            if not missing_ok:
                raise

    @overload
    async def archive(self, dest: None = None, *, path: str | None = None) -> bytes: ...
    @overload
    async def archive(self, dest: core.Destination, *, path: str | None = None) -> int: ...
    async def archive(
        self, dest: core.Destination | None = None, *, path: str | None = None
    ) -> Any:
        return await self._client._download(calls.download_archive(self.id, path), dest)

    async def unpack(self, source: core.Source, *, path: str | None = None) -> Unpacked:
        return await self._client._upload(calls.upload_archive(self.id, path), source)


class AsyncFiles:
    """``context.files``: the context's work directory, streamed both ways."""

    def __init__(self, client: AsyncClient, context_id: str) -> None:
        self._client = client
        self._context_id = context_id

    async def upload(self, path: str, source: core.Source) -> Uploaded:
        return await self._client._upload(calls.upload_file(self._context_id, path), source)

    @overload
    async def download(self, path: str, dest: None = None) -> bytes: ...
    @overload
    async def download(self, path: str, dest: core.Destination) -> int: ...
    async def download(self, path: str, dest: core.Destination | None = None) -> Any:
        return await self._client._download(calls.download_file(self._context_id, path), dest)

    async def list(self, path: str = "", *, recursive: bool = False) -> list[FileInfo]:
        return await self._client._send(calls.list_files(self._context_id, path, recursive))

    async def delete(self, path: str) -> None:
        await self._client._send(calls.delete_file(self._context_id, path))
