"""An httpx transport for node-to-node HTTP/1.1: asyncio streams and the httptools parser.

Forwarding sits on the hot path of every request for another node's context. httpx's
default transport (httpcore over anyio, with the pure-Python h11 parser) cost ~0.45 ms of
CPU per forwarded request here, more than the whole budget for the hop; this one costs a
tenth of that. It speaks only what cellbox peers need: plain HTTP/1.1 to uvicorn, keep-alive
connections kept per peer, request bodies streamed (chunked when their size is not known),
answers streamed chunk by chunk as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator

import httptools
import httpx

_READ = 65536


class _Connection:
    """One keep-alive connection to a peer and the parser of its current answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self._interim = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        # A 1xx (a "100 Continue" for a request that said "Expect: 100-continue") is not the
        # answer: the real one follows on the same connection, and taking the 1xx for it
        # would leave that answer to be read as the next request's.
        if self._parser.get_status_code() < 200:
            self._interim = True
            self.headers = []
            return
        self.headers_done = True
        # asked now: once the message is complete the parser no longer says
        self.keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True

    async def feed(self, timeout: float | None) -> None:
        """Read once from the socket into the parser (``httpx.ReadTimeout`` past ``timeout``)."""
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(_READ)
        except TimeoutError:
            raise httpx.ReadTimeout("the peer did not answer in time") from None
        if not data:
            raise httpx.RemoteProtocolError("the peer closed the connection mid-answer")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"bad answer from the peer: {exc}") from None

    async def read_head(self, timeout: float | None) -> None:
        """Read until the answer's status line and headers are in."""
        while not self.headers_done:
            await self.feed(timeout)

    @property
    def status(self) -> int:
        return self._parser.get_status_code()

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.reader.at_eof()

    def reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.headers, self.chunks = [], []
        self.headers_done = self.keep_alive = self.complete = self._interim = False

    def write(self, data: bytes) -> None:
        # uvloop raises RuntimeError on a write to a connection the peer has closed
        if self.writer.is_closing():
            raise ConnectionResetError("the peer closed the connection")
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


class _Answer(httpx.AsyncByteStream):
    def __init__(
        self,
        transport: StreamTransport,
        key: tuple[str, int],
        conn: _Connection,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._key = key
        self._conn = conn
        self._timeout = timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        try:
            while True:
                if conn.chunks:
                    chunks, conn.chunks = conn.chunks, []
                    for chunk in chunks:
                        yield chunk
                if conn.complete:
                    break
                await conn.feed(self._timeout)
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from None
        self._done = True
        self._transport.release(self._key, conn)

    async def aclose(self) -> None:
        if not self._done:  # not read to the end: the connection cannot carry another request
            self._done = True
            self._conn.close()


class StreamTransport(httpx.AsyncBaseTransport):
    def __init__(self, keepalive_expiry_s: float = 2.0, max_idle_per_peer: int = 64) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)
        self._expiry = keepalive_expiry_s
        self._max_idle = max_idle_per_peer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.host, url.port or 80)
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        conn = self._take(key) or await self._connect(key, timeouts.get("connect"))
        # The answer is read while the body goes out: a peer may answer before it has read
        # the whole body (a 413 for an upload past its limit, a 404) and close the
        # connection, and that answer is the one to pass on, not the broken pipe.
        head = asyncio.ensure_future(conn.read_head(read_timeout))
        try:
            await self._send(conn, request, head)
            await head
        except OSError as exc:
            head.cancel()
            conn.close()
            raise httpx.ReadError(str(exc)) from None
        except BaseException:
            head.cancel()
            conn.close()
            raise
        if request.method == "HEAD":  # no body follows, whatever the headers say
            conn.complete = True
            conn.chunks.clear()
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Answer(self, key, conn, read_timeout),
            extensions={"http_version": b"HTTP/1.1"},
        )

    @staticmethod
    async def _send(conn: _Connection, request: httpx.Request, head: asyncio.Future[None]) -> None:
        """Write the request; stop sending its body once the peer has answered."""
        lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
        lines += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
        lines.append(b"\r\n")
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        pending = b"".join(lines)  # goes out with the first piece of the body: one send
        try:
            async for chunk in request.stream:  # type: ignore[union-attr]
                if head.done():
                    conn.keep_alive = False  # the rest of the body was not sent
                    return
                if chunk:
                    pending += b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                    conn.write(pending)
                    pending = b""
                    await conn.writer.drain()
            if pending or chunked:
                conn.write(pending + (b"0\r\n\r\n" if chunked else b""))
            await conn.writer.drain()
        except OSError:
            if not head.done():
                # the peer may have answered and closed before reading it all: its answer
                # is in our buffer, read by ``head`` (which raises if there is none)
                await asyncio.wait({head})
            if head.cancelled() or head.exception() is not None:
                raise
            conn.keep_alive = False

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle[key]
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < self._expiry and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    async def _connect(self, key: tuple[str, int], timeout: float | None) -> _Connection:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(*key, limit=_READ)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from None
        return _Connection(reader, writer)

    def release(self, key: tuple[str, int], conn: _Connection) -> None:
        if conn.reusable and len(self._idle[key]) < self._max_idle:
            conn.reset()
            conn.idle_since = time.monotonic()
            self._idle[key].append(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                with contextlib.suppress(Exception):
                    conn.close()
        self._idle.clear()
