"""A context's DNS: a forwarder whose sockets live in the context's network namespace.

The server binds a UDP and a TCP socket to ``127.0.0.53:53`` inside the namespace (port 53
is out of reach for the unprivileged code there) and serves them from its own event loop;
queries go on to the host's resolvers from the host's side, which the context itself
cannot reach. An answer too big for one datagram comes truncated over UDP, and whole over
TCP, where resolvers ask again for it.
Under an allowlist only the names it lists are answered (the rest get REFUSED at once,
with the extended error *Prohibited* for a client that speaks EDNS, so the context can
tell the policy's no from a resolver's failure), and the addresses of each answer are
added to the namespace's allowed set *before* the answer is sent, so the connection that
follows the lookup is let through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable

import dns.asyncquery
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

from cellbox.sandbox.netpolicy import Policy

log = logging.getLogger("cellbox.dns")

UPSTREAM_TIMEOUT_S = 4.0
MAX_PENDING = 64  # queries of one context in flight; more are dropped (the client retries)
MAX_UDP_ANSWER = 4096
MAX_TCP_CONNECTIONS = 16  # of one context at once; more are closed at once
TCP_IDLE_S = 10.0  # a TCP client that sends no whole query for this long is hung up on

AllowAddresses = Callable[[list[str]], Awaitable[None]]


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The host's resolvers (the server reaches them from the host's namespace)."""
    try:
        return list(dns.resolver.Resolver(filename=path, configure=True).nameservers)
    except (OSError, dns.exception.DNSException):
        return []


class Forwarder(asyncio.DatagramProtocol):
    """Answers one context's queries as its policy allows."""

    def __init__(self, policy: Policy, nameservers: Iterable[str], allow: AllowAddresses):
        self.policy = policy
        self._nameservers = list(nameservers)
        self._allow = allow
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self._pending) >= MAX_PENDING:
            return
        task = asyncio.create_task(self._answer(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def serve(self, udp: socket.socket, tcp: socket.socket) -> None:
        """Serve on ``udp`` and ``tcp`` (bound already, in the context's namespace; ``tcp``
        listening)."""
        udp.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=udp)
        self._tcp = await asyncio.start_server(self.serve_tcp, sock=tcp)

    def close(self) -> None:
        for task in self._pending:
            task.cancel()
        if self._transport is not None:
            self._transport.close()
        if self._tcp is not None:
            self._tcp.close()
        for writer in self._connections:
            writer.close()

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        answered = await self._query_and_reply(data)
        if answered is not None and self._transport is not None:
            if not self._transport.is_closing():
                with contextlib.suppress(OSError, dns.exception.DNSException):
                    self._transport.sendto(_udp_wire(*answered), addr)

    async def _query_and_reply(
        self, data: bytes
    ) -> tuple[dns.message.Message, dns.message.Message] | None:
        """The query in ``data`` and the reply to it; None if ``data`` is not DNS."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        try:
            return query, await self._reply(query)
        except Exception:
            log.exception("DNS forwarder failed on a query")
            return query, _error(query, dns.rcode.SERVFAIL)

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One TCP client (RFC 7766): length-prefixed queries answered in turn, whole."""
        if len(self._connections) >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._connections.add(writer)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_S):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                answered = await self._query_and_reply(data)
                if answered is None:
                    return  # not DNS: hang up
                writer.write(_tcp_wire(*answered))
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, dns.exception.DNSException):
            pass  # the client left, or sent nothing for too long
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _reply(self, query: dns.message.Message) -> dns.message.Message:
        if len(query.question) != 1 or query.opcode() != 0:
            return _error(query, dns.rcode.NOTIMP)
        name = query.question[0].name.to_text(omit_final_dot=True)
        if not self.policy.allows_name(name):
            return policy_refusal(query)
        response = await self._ask_upstream(query)
        if response is None:
            return _error(query, dns.rcode.SERVFAIL)
        if self.policy.kind == "allow":
            addresses = [
                rdata.address
                for rrset in response.answer
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                for rdata in rrset
            ]
            if addresses:
                await self._allow(addresses)
        return response

    async def _ask_upstream(self, query: dns.message.Message) -> dns.message.Message | None:
        for nameserver in self._nameservers:
            try:
                response = await dns.asyncquery.udp(
                    query, nameserver, timeout=UPSTREAM_TIMEOUT_S, ignore_unexpected=True
                )
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(
                        query, nameserver, timeout=UPSTREAM_TIMEOUT_S
                    )
                return response
            except (OSError, dns.exception.DNSException) as exc:
                log.debug("upstream resolver %s failed: %s", nameserver, exc)
        return None


def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response


def _udp_wire(query: dns.message.Message, reply: dns.message.Message) -> bytes:
    """``reply`` as one UDP datagram; one too big is sent truncated (TC, no records), as a
    server does, so the client fails or asks again at once instead of waiting in vain."""
    try:
        return reply.to_wire(max_size=MAX_UDP_ANSWER)
    except dns.exception.TooBig:
        return _truncated(query, reply).to_wire()


def _tcp_wire(query: dns.message.Message, reply: dns.message.Message) -> bytes:
    """``reply`` with its two-byte length; one past the 64 KiB a TCP message can hold is
    sent truncated (TC, no records)."""
    try:
        wire = reply.to_wire(max_size=0xFFFF)
    except dns.exception.TooBig:
        wire = _truncated(query, reply).to_wire()
    return len(wire).to_bytes(2, "big") + wire


def _truncated(query: dns.message.Message, reply: dns.message.Message) -> dns.message.Message:
    """``reply``'s code and the TC flag, without records."""
    truncated = dns.message.make_response(query)
    truncated.set_rcode(reply.rcode())
    truncated.flags |= dns.flags.TC
    return truncated


def policy_refusal(query: dns.message.Message) -> dns.message.Message:
    """REFUSED, and why (RFC 8914) when the query allows options (EDNS)."""
    response = _error(query, dns.rcode.REFUSED)
    if query.edns >= 0:
        reason = dns.edns.EDEOption(dns.edns.EDECode.PROHIBITED, "not in the network allowlist")
        response.use_edns(0, payload=query.payload, options=[reason])
    return response
