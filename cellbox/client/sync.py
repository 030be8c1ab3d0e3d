"""The blocking face: :class:`Client`, its contexts and their files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, overload

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


class Client:
    """A cellbox server, spoken to over HTTP (blocking).

    ``url`` and ``api_key`` default to ``CELLBOX_URL`` / ``CELLBOX_API_KEY``; for a server on this
    machine the token file it wrote is read when no key is given. ``timeout`` (seconds) bounds calls
    that run no code; executions wait for their own timeout plus a margin.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = core.Config.resolve(url, api_key, timeout)
        self._http = httpx.Client(
            base_url=self.config.url,
            headers=core.headers(self.config),
            timeout=core.http_timeout(self.config),
            transport=transport,
        )
        self.contexts = Contexts(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client({self.config.url!r})"

    # ---- plumbing shared by every call of this face ----

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with core.transport_errors(self.config.url):
            return core.check(self._http.request(method, path, **kwargs))

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return orjson.loads(self._request(method, path, **kwargs).content)

    def _open_stream(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request whose answer is read incrementally; errors are read whole and raised."""
        request = self._http.build_request(method, path, **kwargs)
        with core.transport_errors(self.config.url):
            response = self._http.send(request, stream=True)
            if response.status_code >= 400:
                try:
                    response.read()
                finally:
                    response.close()
                core.check(response)
        return response

    def _download(self, path: str, params: dict[str, str], dest: core.Destination | None) -> Any:
        response = self._open_stream("GET", path, params=params)
        target = core.open_destination(dest) if dest is not None else None
        ok = False
        try:
            with core.transport_errors(self.config.url):
                if target is None:
                    data = response.read()
                    ok = True
                    return data
                written = 0
                for chunk in response.iter_bytes(core.CHUNK):
                    target.file.write(chunk)
                    written += len(chunk)
                ok = True
                return written
        finally:
            response.close()
            if target is not None:
                target.finish(ok)

    def _upload(self, path: str, source: core.Source, params: dict[str, str]) -> Any:
        opened = core.open_source(source)
        try:
            return self._json(
                "PUT",
                path,
                params=params,
                content=core.read_chunks(opened.file),
                headers=opened.upload_headers(),
            )
        finally:
            opened.close()

    # ---- the API ----

    def execute(
        self,
        code: str,
        *,
        language: str | None = None,
        context: str | Context | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Execution:
        """Run ``code`` and wait for the whole result; ``timeout`` is in seconds."""
        body = core.execute_body(code, language, core.context_id(context), env, timeout)
        timeouts = core.execution_timeout(self.config, timeout)
        return Execution.from_json(self._json("POST", "/execute", json=body, timeout=timeouts))

    def stream(
        self,
        code: str,
        *,
        language: str | None = None,
        context: str | Context | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecutionStream:
        """Run ``code``; iterate the result for its events as they happen."""
        body = core.execute_body(code, language, core.context_id(context), env, timeout)
        return ExecutionStream(self, body, core.execution_timeout(self.config, timeout))

    def health(self) -> bool:
        """True when the server answers ``GET /healthz``."""
        return self._json("GET", "/healthz").get("status") == "ok"

    def info(self) -> dict[str, Any]:
        """``GET /info``: the server's isolation report and limits."""
        return self._json("GET", "/info")


class ExecutionStream:
    """The events of one execution, read as they arrive (``with`` closes it early).

    After the ``exit`` event, :attr:`execution` holds the folded result.
    """

    def __init__(self, client: Client, body: dict[str, Any], timeout: httpx.Timeout) -> None:
        self._client = client
        self._body = body
        self._timeout = timeout
        self._response: httpx.Response | None = None
        self._events: list[Event] = []
        self.execution: Execution | None = None

    def __enter__(self) -> ExecutionStream:
        self._open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _open(self) -> httpx.Response:
        if self._response is None:
            self._response = self._client._open_stream(
                "POST", "/execute/async", json=self._body, timeout=self._timeout
            )
        return self._response

    def __iter__(self) -> Iterator[Event]:
        response = self._open()
        try:
            with core.transport_errors(self._client.config.url):
                for sse in EventSource(response).iter_sse():
                    event = parse_event(orjson.loads(sse.data))
                    self._events.append(event)
                    yield event
                    if isinstance(event, Exit):
                        self.execution = fold_events(self._events)
                        return
            raise ConnectionFailed("the event stream ended before the execution finished")
        finally:
            self.close()

    def result(self) -> Execution:
        """Read the remaining events and return the whole :class:`Execution`."""
        for _ in self:
            pass
        assert self.execution is not None
        return self.execution

    def close(self) -> None:
        if self._response is not None:
            self._response.close()


class Contexts:
    """``client.contexts``: create, list, get and delete contexts."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        language: str = "python",
        *,
        cwd: str | None = None,
        network: Any = None,
        packages: list[str] | None = None,
    ) -> Context:
        body = core.create_body(language, cwd, network, packages)
        timeout = core.create_timeout(self._client.config, packages)
        data = self._client._json("POST", "/contexts", json=body, timeout=timeout)
        return Context(self._client, ContextInfo.from_json(data))

    def list(self) -> list[Context]:
        items = self._client._json("GET", "/contexts")["items"]
        return [Context(self._client, ContextInfo.from_json(item)) for item in items]

    def get(self, context_id: str) -> Context:
        data = self._client._json("GET", core.context_path(context_id))
        return Context(self._client, ContextInfo.from_json(data))

    def delete(self, context: str | Context) -> None:
        self._client._request("DELETE", core.context_path(core.context_id(context)))

    def restart(self, context: str | Context) -> ContextInfo:
        path = core.context_path(core.context_id(context), "restart")
        return ContextInfo.from_json(self._client._json("POST", path))

    def interrupt(self, context: str | Context) -> ContextInfo:
        path = core.context_path(core.context_id(context), "interrupt")
        return ContextInfo.from_json(self._client._json("POST", path))


class Context:
    """A live context. ``with client.contexts.create() as ctx:`` deletes it at the end."""

    def __init__(self, client: Client, info: ContextInfo) -> None:
        self._client = client
        self.info = info
        self.files = Files(client, info.id)

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
        return f"Context(id={self.id!r}, language={self.language!r})"

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete(missing_ok=True)

    def execute(
        self, code: str, *, env: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> Execution:
        return self._client.execute(code, context=self.id, env=env, timeout=timeout)

    def stream(
        self, code: str, *, env: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> ExecutionStream:
        return self._client.stream(code, context=self.id, env=env, timeout=timeout)

    def restart(self) -> Context:
        """Fresh process: state cleared, counter reset, files kept."""
        self.info = self._client.contexts.restart(self.id)
        return self

    def interrupt(self) -> Context:
        """Stop the running execution (it answers with an interrupt error); state is kept."""
        self.info = self._client.contexts.interrupt(self.id)
        return self

    def delete(self, *, missing_ok: bool = False) -> None:
        try:
            self._client.contexts.delete(self.id)
        except NotFound:
            if not missing_ok:
                raise

    @overload
    def archive(self, dest: None = None, *, path: str | None = None) -> bytes: ...
    @overload
    def archive(self, dest: core.Destination, *, path: str | None = None) -> int: ...
    def archive(self, dest: core.Destination | None = None, *, path: str | None = None) -> Any:
        """The work directory (or ``path`` in it) as tar.gz: bytes, or streamed into ``dest``."""
        route = core.context_path(self.id, "archive")
        return self._client._download(route, core.archive_params(path), dest)

    def unpack(self, source: core.Source, *, path: str | None = None) -> Unpacked:
        """Upload a tar or tar.gz and unpack it under ``path`` (default: the work directory)."""
        route = core.context_path(self.id, "archive")
        return Unpacked.from_json(self._client._upload(route, source, core.archive_params(path)))


class Files:
    """``context.files``: the context's work directory, streamed both ways."""

    def __init__(self, client: Client, context_id: str) -> None:
        self._client = client
        self._context_id = context_id

    def upload(self, path: str, source: core.Source) -> Uploaded:
        """Write ``source`` (a local path, bytes or a binary file object) to ``path``."""
        route = core.file_path(self._context_id, path)
        return Uploaded.from_json(self._client._upload(route, source, {}))

    @overload
    def download(self, path: str, dest: None = None) -> bytes: ...
    @overload
    def download(self, path: str, dest: core.Destination) -> int: ...
    def download(self, path: str, dest: core.Destination | None = None) -> Any:
        """The file's bytes, or streamed into ``dest`` (local path or file object; returns size)."""
        return self._client._download(core.file_path(self._context_id, path), {}, dest)

    def list(self, path: str = "", *, recursive: bool = False) -> list[FileInfo]:
        params = core.list_params(path, recursive)
        data = self._client._json(
            "GET", core.context_path(self._context_id, "files"), params=params
        )
        return [FileInfo.from_json(item) for item in data["items"]]

    def delete(self, path: str) -> None:
        self._client._request("DELETE", core.file_path(self._context_id, path))
