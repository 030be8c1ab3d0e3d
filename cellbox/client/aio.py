"""The asyncio face: :class:`AsyncClient`, its contexts and their files (mirrors ``sync``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Mapping
from typing import IO, Any, overload

import anyio.to_thread
import httpx
import orjson
from httpx_sse import EventSource

from cellbox.client import core
from cellbox.client.errors import ConnectionFailed, NotFound
from cellbox.client.models import (
    ContextInfo,
    Event,
    Execution,
    Exit,
    FileInfo,
    Unpacked,
    Uploaded,
    fold_events,
    parse_event,
)


class AsyncClient:
    """A cellbox server, spoken to over HTTP from asyncio. Same arguments as :class:`Client`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = core.Config.resolve(url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.config.url,
            headers=core.headers(self.config),
            timeout=core.http_timeout(self.config),
            transport=transport,
        )
        self.contexts = AsyncContexts(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.config.url!r})"

    # ---- plumbing shared by every call of this face ----

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with core.transport_errors(self.config.url):
            return core.check(await self._http.request(method, path, **kwargs))

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return orjson.loads((await self._request(method, path, **kwargs)).content)

    async def _open_stream(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request = self._http.build_request(method, path, **kwargs)
        with core.transport_errors(self.config.url):
            response = await self._http.send(request, stream=True)
            if response.status_code >= 400:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                core.check(response)
        return response

    async def _download(
        self, path: str, params: dict[str, str], dest: core.Destination | None
    ) -> Any:
        response = await self._open_stream("GET", path, params=params)
        target = core.open_destination(dest) if dest is not None else None
        ok = False
        try:
            with core.transport_errors(self.config.url):
                if target is None:
                    data = await response.aread()
                    ok = True
                    return data
                written = 0
                async for chunk in response.aiter_bytes(core.CHUNK):
                    await anyio.to_thread.run_sync(target.file.write, chunk)
                    written += len(chunk)
                ok = True
                return written
        finally:
            await response.aclose()
            if target is not None:
                target.finish(ok)

    async def _upload(self, path: str, source: core.Source, params: dict[str, str]) -> Any:
        opened = core.open_source(source)
        try:
            return await self._json(
                "PUT",
                path,
                params=params,
                content=_read_chunks(opened.file),
                headers=opened.upload_headers(),
            )
        finally:
            opened.close()

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
        body = core.execute_body(code, language, core.context_id(context), env, timeout)
        timeouts = core.execution_timeout(self.config, timeout)
        return Execution.from_json(
            await self._json("POST", "/execute", json=body, timeout=timeouts)
        )

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
        body = core.execute_body(code, language, core.context_id(context), env, timeout)
        return AsyncExecutionStream(self, body, core.execution_timeout(self.config, timeout))

    async def health(self) -> bool:
        return (await self._json("GET", "/healthz")).get("status") == "ok"

    async def info(self) -> dict[str, Any]:
        return await self._json("GET", "/info")


async def _read_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    # Local disk reads go to a thread so a slow disk never stalls the event loop.
    while chunk := await anyio.to_thread.run_sync(file.read, core.CHUNK):
        yield chunk


class AsyncExecutionStream:
    """The events of one execution (``async with`` closes it early); see ``ExecutionStream``."""

    def __init__(self, client: AsyncClient, body: dict[str, Any], timeout: httpx.Timeout) -> None:
        self._client = client
        self._body = body
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._events: list[Event] = []
        self.execution: Execution | None = None

    async def __aenter__(self) -> AsyncExecutionStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self) -> httpx.Response:
        if self._response is None:
            self._response = await self._client._open_stream(
                "POST", "/execute/async", json=self._body, timeout=self._timeout
            )
        return self._response

    async def __aiter__(self) -> AsyncIterator[Event]:
        response = await self._open()
        try:
            with core.transport_errors(self._client.config.url):
                async for sse in EventSource(response).aiter_sse():
                    event = parse_event(orjson.loads(sse.data))
                    self._events.append(event)
                    yield event
                    if isinstance(event, Exit):
                        self.execution = fold_events(self._events)
                        return
            raise ConnectionFailed("the event stream ended before the execution finished")
        finally:
            await self.aclose()

    async def result(self) -> Execution:
        async for _ in self:
            pass
        assert self.execution is not None
        return self.execution

    async def aclose(self) -> None:
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
        return ContextCreation(self._create(language, cwd, network, packages))

    async def _create(
        self, language: str, cwd: str | None, network: Any, packages: list[str] | None
    ) -> AsyncContext:
        body = core.create_body(language, cwd, network, packages)
        timeout = core.create_timeout(self._client.config, packages)
        data = await self._client._json("POST", "/contexts", json=body, timeout=timeout)
        return AsyncContext(self._client, ContextInfo.from_json(data))

    async def list(self) -> list[AsyncContext]:
        items = (await self._client._json("GET", "/contexts"))["items"]
        return [AsyncContext(self._client, ContextInfo.from_json(item)) for item in items]

    async def get(self, context_id: str) -> AsyncContext:
        data = await self._client._json("GET", core.context_path(context_id))
        return AsyncContext(self._client, ContextInfo.from_json(data))

    async def delete(self, context: str | AsyncContext) -> None:
        await self._client._request("DELETE", core.context_path(core.context_id(context)))

    async def restart(self, context: str | AsyncContext) -> ContextInfo:
        path = core.context_path(core.context_id(context), "restart")
        return ContextInfo.from_json(await self._client._json("POST", path))

    async def interrupt(self, context: str | AsyncContext) -> ContextInfo:
        path = core.context_path(core.context_id(context), "interrupt")
        return ContextInfo.from_json(await self._client._json("POST", path))


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

    async def __aexit__(self, *exc: object) -> None:
        if self._context is not None:
            await self._context.delete(missing_ok=True)


class AsyncContext:
    """A live context (asyncio). ``async with client.contexts.create() as ctx:`` deletes it."""

    def __init__(self, client: AsyncClient, info: ContextInfo) -> None:
        self._client = client
        self.info = info
        self.files = AsyncFiles(client, info.id)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def language(self) -> str:
        return self.info.language

    @property
    def cwd(self) -> str:
        return self.info.cwd

    def __repr__(self) -> str:
        return f"AsyncContext(id={self.id!r}, language={self.language!r})"

    async def __aenter__(self) -> AsyncContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
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
        route = core.context_path(self.id, "archive")
        return await self._client._download(route, core.archive_params(path), dest)

    async def unpack(self, source: core.Source, *, path: str | None = None) -> Unpacked:
        route = core.context_path(self.id, "archive")
        data = await self._client._upload(route, source, core.archive_params(path))
        return Unpacked.from_json(data)


class AsyncFiles:
    """``context.files``: the context's work directory, streamed both ways."""

    def __init__(self, client: AsyncClient, context_id: str) -> None:
        self._client = client
        self._context_id = context_id

    async def upload(self, path: str, source: core.Source) -> Uploaded:
        route = core.file_path(self._context_id, path)
        return Uploaded.from_json(await self._client._upload(route, source, {}))

    @overload
    async def download(self, path: str, dest: None = None) -> bytes: ...
    @overload
    async def download(self, path: str, dest: core.Destination) -> int: ...
    async def download(self, path: str, dest: core.Destination | None = None) -> Any:
        return await self._client._download(core.file_path(self._context_id, path), {}, dest)

    async def list(self, path: str = "", *, recursive: bool = False) -> list[FileInfo]:
        params = core.list_params(path, recursive)
        route = core.context_path(self._context_id, "files")
        data = await self._client._json("GET", route, params=params)
        return [FileInfo.from_json(item) for item in data["items"]]

    async def delete(self, path: str) -> None:
        await self._client._request("DELETE", core.file_path(self._context_id, path))
