"""The blocking face: :class:`Client`, its contexts and their files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

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


class Client:
    """A cellbox server, spoken to over HTTP (blocking).

    ``url`` and ``api_key`` default to ``CELLBOX_URL`` / ``CELLBOX_API_KEY``; for a server on this
    machine the token file it wrote is read when no key is given. ``timeout`` (seconds) bounds calls
    that run no code (None: they wait as long as the server takes). Executions wait for their own
    timeout plus a margin; one given no timeout runs for the server's default
    (``--default-timeout-ms``, which ``GET /info`` tells, read again after a minute) and is
    waited for as long, plus the margin, however long the server allows.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = core.Config.resolve(url, api_key, timeout)
        self._http = httpx.Client(**core.client_options(self.config), transport=transport)
        self.contexts = Contexts(self)
        self._server_default = core.ServerDefault()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client({self.config.url!r})"

    # ---- the I/O: sending calls ----

    def _waiting(self, call: Call[T]) -> Call[T]:
        """``call``, waited for as long as the server's default timeout allows when it is an
        execution that names no timeout of its own (from ``GET /info``, read again after
        ``core.SERVER_DEFAULT_FOR_S``)."""
        if not call.server_timeout:
            return call
        known = self._server_default
        if known.due():
            try:
                known.read(self.info())
            except RequestTimeout:
                raise  # a server that answers nothing in time would not answer the execution
            except CellboxError:
                pass  # the execution's own request tells what is wrong
        return call.waiting(self.config, known.seconds)

    def _send(self, call: Call[T], **body: Any) -> T:
        call = self._waiting(call)
        with core.transport_errors(self.config.url):
            response = core.check(self._http.send(call.build(self._http, **body)))
        return call.result(response.content, response.status_code)

    def _open_stream(self, call: Call[Any]) -> httpx.Response:
        """Send a call whose answer is read incrementally; errors are read whole and raised."""
        call = self._waiting(call)
        with core.transport_errors(self.config.url):
            response = self._http.send(call.build(self._http), stream=True)
            if not response.is_success:
                try:
                    response.read()
                finally:
                    response.close()
                core.check(response)
        return response

    def _download(self, call: Call[None], dest: core.Destination | None) -> Any:
        response = self._open_stream(call)
        try:
            with core.transport_errors(self.config.url):
                if dest is None:
                    return response.read()
                written = 0
                with core.destination(dest) as file:
                    for chunk in response.iter_bytes(core.CHUNK):
                        file.write(chunk)
                        written += len(chunk)
                return written
        finally:
            response.close()

    def _upload(self, call: Call[T], source: core.Source) -> T:
        opened = core.open_source(source)
        try:
            return self._send(call, content=opened.chunks(), headers=opened.upload_headers())
        except ConnectionFailed as exc:
            if (refused := self._refused_upload(opened)) is not None:
                raise refused from exc
            raise
        finally:
            opened.close()

    def _refused_upload(self, opened: core.OpenSource) -> APIError | None:
        """Whether an upload cut short was one past the server's limit (see core)."""
        try:
            return core.refused_upload(opened, self.info())
        except CellboxError:
            return None

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
        return self._send(calls.execute(self.config, code, language, context, env, timeout))

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
        call = calls.stream(calls.execute(self.config, code, language, context, env, timeout))
        return ExecutionStream(self, call)

    def health(self) -> bool:
        """True when the server answers ``GET /healthz``."""
        return self._send(calls.health())

    def info(self) -> dict[str, Any]:
        """``GET /info``: the server's isolation report and limits."""
        return self._send(calls.info())


class ExecutionStream(core.EventLog):
    """The events of one execution, read as they arrive (``with`` closes it early).

    After the ``exit`` event, :attr:`execution` holds the folded result.
    """

    def __init__(self, client: Client, call: Call[None]) -> None:
        super().__init__()
        self._client = client
        self._call = call

    def __enter__(self) -> ExecutionStream:
        self._open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _open(self) -> httpx.Response:
        if self._response is None:
            self._response = self._client._open_stream(self._call)
        return self._response

    def __iter__(self) -> Iterator[Event]:
        try:
            if not self._begin_reading():
                return
        except StreamClosed:
            self.close()
            raise
        response = self._open()
        try:
            with core.transport_errors(self._client.config.url):
                events = EventSource(response).iter_sse()
                for sse in events:
                    event = self._read(sse.data)
                    if self._finished(event):
                        for _ in events:  # the rest: see core.EventLog
                            pass
                        yield event
                        return
                    yield event
            raise ConnectionFailed(core.STREAM_CUT)
        finally:
            self.close()

    def result(self) -> Execution:
        """Read the remaining events and return the whole :class:`Execution`."""
        for _ in self:
            pass
        assert self.execution is not None
        return self.execution

    def close(self) -> None:
        self._used = True
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
        call = calls.create_context(self._client.config, language, cwd, network, packages)
        return Context(self._client, self._client._send(call))

    def list(self) -> list[Context]:
        return [Context(self._client, info) for info in self._client._send(calls.list_contexts())]

    def get(self, context_id: str) -> Context:
        return Context(self._client, self._client._send(calls.get_context(context_id)))

    def delete(self, context: str | Context) -> None:
        self._client._send(calls.delete_context(context))

    def restart(self, context: str | Context) -> ContextInfo:
        return self._client._send(calls.restart_context(context))

    def interrupt(self, context: str | Context) -> ContextInfo:
        return self._client._send(calls.interrupt_context(context))


class Context(core.ContextView):
    """A live context. ``with client.contexts.create() as ctx:`` deletes it at the end."""

    def __init__(self, client: Client, info: ContextInfo) -> None:
        super().__init__(info)
        self._client = client
        self.files = Files(client, info.id)

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with core.cleanup_after(exc):
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
        return self._client._download(calls.download_archive(self.id, path), dest)

    def unpack(self, source: core.Source, *, path: str | None = None) -> Unpacked:
        """Upload a tar or tar.gz and unpack it under ``path`` (default: the work directory)."""
        return self._client._upload(calls.upload_archive(self.id, path), source)


class Files:
    """``context.files``: the context's work directory, streamed both ways."""

    def __init__(self, client: Client, context_id: str) -> None:
        self._client = client
        self._context_id = context_id

    def upload(self, path: str, source: core.Source) -> Uploaded:
        """Write ``source`` (a local path, bytes or a binary file object) to ``path``."""
        return self._client._upload(calls.upload_file(self._context_id, path), source)

    @overload
    def download(self, path: str, dest: None = None) -> bytes: ...
    @overload
    def download(self, path: str, dest: core.Destination) -> int: ...
    def download(self, path: str, dest: core.Destination | None = None) -> Any:
        """The file's bytes, or streamed into ``dest`` (local path or file object; returns size)."""
        return self._client._download(calls.download_file(self._context_id, path), dest)

    def list(self, path: str = "", *, recursive: bool = False) -> list[FileInfo]:
        return self._client._send(calls.list_files(self._context_id, path, recursive))

    def delete(self, path: str) -> None:
        self._client._send(calls.delete_file(self._context_id, path))
