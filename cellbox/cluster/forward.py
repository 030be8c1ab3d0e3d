"""Forward one HTTP exchange to the node that owns it, streamed both ways, nothing buffered.

Any route works this way (executions, SSE, file transfers, archives): the request's method,
path, query, headers and body go to the owner as they are, and its answer comes back chunk
by chunk as it arrives. A client that goes away closes the connection to the owner, so the
owner sees the same disconnect a direct client would have caused (and stops the execution).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Collection

import httpx
from starlette.types import Message, Receive, Scope, Send

from cellbox.api.responses import send_json
from cellbox.cluster.peers import Peer
from cellbox.cluster.transport import StreamTransport
from cellbox.sessions.execution import SHUTTING_DOWN

log = logging.getLogger("cellbox.cluster")
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per forwarded request

# Set on requests from a node (forwarded, lists, stats reads): the receiver answers itself.
# Its value is "<node id> <instance>": a node that sees its own id with another instance
# knows that two nodes were given one id.
FORWARDED = b"x-cellbox-forwarded"
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"host"}
)
# Not passed back from the owner's answer: uvicorn puts this node's own Date on it
_NOT_PASSED_BACK = _HOP_BY_HOP | {b"date"}
_WATCH_AFTER_S = 0.05  # most exchanges end sooner: watch for a disconnect only beyond that


# Why an exchange was aborted (the peer's own reason is "unreachable")
CLIENT_GONE, SHUTDOWN = "client gone", "shutdown"

CONNECT_TIMEOUT_S = 1.0  # quick to give up connecting; no limit on an answer's time


def client(transport: StreamTransport) -> httpx.AsyncClient:
    """The client for the peers' stats and lists, on the forwarding transport."""
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S),
        follow_redirects=False,
    )


def unreachable_message(node_id: str) -> dict[str, str]:
    return {"message": f"node {node_id} is unreachable"}


async def answer_unreachable(send: Send, node_id: str) -> None:
    await send_json(send, 503, unreachable_message(node_id))


class PeerLost(Exception):
    """The owner went away after its answer had started: the client's connection is cut."""


class Exchange:
    """One forwarded request; aborted when its peer goes down or its client goes away."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._deadline: asyncio.Timeout | None = None
        self._later: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None

    def abort(self, reason: str) -> None:
        self.reason = self.reason or reason
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time())

    def watch_client(self, receive: Receive) -> None:
        """Once the request body is read: abort if the client disconnects."""

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.abort(CLIENT_GONE)

        def begin() -> None:
            self._watcher = asyncio.create_task(watch())

        self._later = asyncio.get_running_loop().call_later(_WATCH_AFTER_S, begin)

    def finish(self) -> None:
        self._deadline = None
        if self._later is not None:
            self._later.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


async def forward(
    transport: StreamTransport,
    peer: Peer,
    sender: bytes,
    scope: Scope,
    receive: Receive,
    send: Send,
    in_flight: set[Exchange],
    body: bytes | None = None,
    decline: Collection[int] = (),
) -> bool:
    """Send the request to ``peer`` and its answer to the client.

    ``sender``: this node, as the ``X-Cellbox-Forwarded`` header names it.
    ``in_flight``: the node's forwarded exchanges, which this one joins while it lasts.
    ``body``: the request body when it was read already, else it is streamed from
    ``receive``. Returns False, having sent nothing, if the peer could not be reached or
    answered with a status in ``decline`` (the caller may try another node); otherwise the
    exchange is done (a peer that cannot be reached is a 503 unless declined).
    """
    exchange = Exchange()
    headers = [(k, v) for k, v in scope["headers"] if k not in _HOP_BY_HOP and k != FORWARDED]
    headers.append((FORWARDED, sender))
    url = peer.url + scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        url += "?" + scope["query_string"].decode("latin-1")
    streamed = _stream_body(receive, exchange) if body is None else None
    content = body if streamed is None else streamed
    if streamed is None:
        exchange.watch_client(receive)
    started = False
    response: httpx.Response | None = None
    peer.exchanges.add(exchange)
    in_flight.add(exchange)
    try:
        async with asyncio.timeout(None) as exchange._deadline:
            # straight to the transport: a client's extras (auth, cookies, redirects) are
            # not wanted here, and cost a fifth of the hop
            request = httpx.Request(
                scope["method"],
                url,
                headers=headers,
                content=content,
                extensions={"timeout": {"connect": CONNECT_TIMEOUT_S}},
            )
            response = await transport.handle_async_request(request)
            if response.status_code in decline:
                return False
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.lower(), v)
                        for k, v in response.headers.raw
                        if k.lower() not in _NOT_PASSED_BACK
                    ],
                }
            )
            started = True
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return True
    except (httpx.TransportError, TimeoutError) as exc:
        exchange.finish()
        if exchange.reason == CLIENT_GONE:
            return True  # nobody to answer; closing the upstream told the owner
        if exchange.reason == SHUTDOWN and not started:
            await send_json(send, 503, {"message": SHUTTING_DOWN})
            return True
        if isinstance(exc, httpx.TransportError):
            log.warning("forwarding to node %s failed: %r", peer.node_id, exc)
            peer.mark_down()
        if started:
            raise PeerLost(f"node {peer.node_id} went away mid-answer") from None
        if decline:
            return False
        await answer_unreachable(send, peer.node_id or peer.url)
        return True
    finally:
        exchange.finish()
        peer.exchanges.discard(exchange)
        in_flight.discard(exchange)
        if streamed is not None:  # the owner may have answered before reading it all
            await streamed.aclose()
        if response is not None:
            with contextlib.suppress(Exception):
                await response.aclose()


async def _stream_body(receive: Receive, exchange: Exchange) -> AsyncGenerator[bytes, None]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            exchange.abort(CLIENT_GONE)
            return
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body", False):
            exchange.watch_client(receive)
            return
