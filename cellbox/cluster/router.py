"""ASGI middleware: answer here, forward to the owner, or place a new context on a node.

- ``/contexts/{id}`` and everything below it: the node inside the id owns it; another
  node's request is forwarded whole (so routes added later forward with no code here).
- ``POST /execute`` and ``/execute/async``: the body's ``context_id`` names the owner;
  without one, the request creates a context, so it is placed like ``POST /contexts``.
- ``POST /contexts``: tried on the node with the most free capacity, then the next, until
  one takes it; the last node's answer (a 429 when all are full) is the client's.
- ``GET /contexts``: this node's contexts and every peer's, with the nodes that did not answer.

A forwarded request (``X-Cellbox-Forwarded``) is always answered by the node it reaches.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellbox.api.responses import send_json
from cellbox.cluster.capacity import placement_order
from cellbox.cluster.forward import FORWARDED, answer_unreachable
from cellbox.cluster.identity import owner_of
from cellbox.cluster.node import ClusterNode

log = logging.getLogger("cellbox.cluster")

_EXECUTE = frozenset({"/execute", "/execute/async"})
_DECLINE = (429, 503)  # a node that is full or cannot start a worker: try the next one


class ClusterRouter:
    def __init__(self, app: ASGIApp, node: ClusterNode, body_limit: int) -> None:
        self.app = app
        self.node = node
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == FORWARDED:
                self.node.heard_from(value)
                await self.app(scope, receive, send)
                return
        path, method = scope["path"], scope["method"]
        if path.startswith("/contexts/"):
            await self._to_owner(path.split("/", 3)[2], scope, receive, send, None)
        elif path == "/contexts" and method in ("GET", "HEAD"):  # uvicorn drops HEAD's body
            await send_json(send, 200, await self.node.list_contexts())
        elif (path == "/contexts" or path in _EXECUTE) and method == "POST":
            body, complete = await _read_body(receive, self.body_limit)
            if body is None:
                return  # the client left before its request was whole
            if not complete:  # too large: the app answers 413
                await self.app(scope, _replay(body, receive, more=True), send)
                return
            context_id = _context_id(body) if path in _EXECUTE else None
            if context_id is None:
                await self._place(scope, receive, send, body)
            else:
                await self._to_owner(context_id, scope, receive, send, body)
        else:
            await self.app(scope, receive, send)

    async def _to_owner(
        self, context_id: str, scope: Scope, receive: Receive, send: Send, body: bytes | None
    ) -> None:
        owner = owner_of(context_id)
        local = _replay(body, receive) if body is not None else receive
        if owner is None or owner == self.node.node_id:
            await self.app(scope, local, send)
            return
        peers = self.node.peers
        peer = peers.find(owner)
        if peer is None:
            if owner in peers.known_nodes or not peers.all_known():
                await answer_unreachable(send, owner)
            else:  # no node of the cluster has that id: the context does not exist
                await self.app(scope, local, send)
        elif not peer.reachable:
            await answer_unreachable(send, owner)
        else:
            await self.node.forward(peer, scope, receive, send, body)

    async def _place(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        order = placement_order(self.node.capacities(), self.node.node_id)
        for position, node_id in enumerate(order):
            decline = () if position == len(order) - 1 else _DECLINE
            with self.node.placing(node_id):
                if await self._place_on(node_id, scope, receive, send, body, decline):
                    return
        await send_json(
            send, 503, {"message": "no node of the cluster could take a new context right now"}
        )

    async def _place_on(
        self,
        node_id: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        decline: Collection[int],
    ) -> bool:
        """Create the context on ``node_id``; False (nothing sent) if it declined."""
        if node_id == self.node.node_id:
            return await self._local(scope, _replay(body, receive), send, decline)
        peer = self.node.peers.find(node_id)
        if peer is None:
            return False
        if await self.node.forward(peer, scope, receive, send, body, decline):
            peer.live += 1  # counted until the next read of its stats
            return True
        return False

    async def _local(
        self, scope: Scope, receive: Receive, send: Send, decline: Collection[int]
    ) -> bool:
        """Answer here; False (nothing sent) if the answer's status is in ``decline``."""
        declined = False

        async def guarded(message: Message) -> None:
            nonlocal declined
            if message["type"] == "http.response.start" and message["status"] in decline:
                declined = True
            if not declined:
                await send(message)

        await self.app(scope, receive, guarded)
        return not declined


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """The request body (None if the client left) and whether it is whole (False: it
    passed ``limit``, and more may follow)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive, more: bool = False) -> Receive:
    """``receive`` that gives ``body`` first (then, if ``more``, the rest of the request)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


def _context_id(body: bytes) -> str | None:
    """The ``context_id`` of an execute request; None when absent or unreadable (the app
    then answers the request itself, with the same 400 as anywhere)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = data.get("context_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
