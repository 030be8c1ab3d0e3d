"""A context's DNS forwarder over UDP and TCP: big answers, hostile TCP clients, and a
lookup over TCP from inside a real context.

Traffic: a resolver the test runs on a loopback address, and (the last test) the host's
resolvers asked for a package registry's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import dns.asyncquery
import dns.flags
import dns.message
import dns.rrset

from cellbox.sandbox import netpolicy
from cellbox.sandbox.dns import MAX_TCP_CONNECTIONS, Forwarder
from tests.conftest import Client
from tests.dns_server import DnsServer

UPSTREAM = "127.0.0.77"  # a loopback address for a resolver the test runs on port 53
_T = TypeVar("_T")
RECORDS = 40  # TXT records of ~200 bytes: ~8 KiB, more than one datagram holds


def _big(query: dns.message.Message) -> dns.message.Message:
    reply = dns.message.make_response(query)
    for i in range(RECORDS):
        text = "x" * 200 + str(i)
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "TXT", text))
    return reply


async def _never_allow(addresses: list[str]) -> None:
    raise AssertionError(f"a public policy adds no addresses: {addresses}")


@contextlib.asynccontextmanager
async def _forwarder() -> AsyncIterator[tuple[int, int]]:
    """A public forwarder asking the test's resolver, served on loopback: (udp, tcp) ports."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    forwarder = Forwarder(netpolicy.Policy("public"), [UPSTREAM], _never_allow)
    await forwarder.serve(udp, tcp)
    try:
        yield udp.getsockname()[1], tcp.getsockname()[1]
    finally:
        forwarder.close()


def _with_upstream(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` while the test's resolver answers every query with ``_big``."""
    upstream = DnsServer(_big, host=UPSTREAM, port=53)
    try:
        return asyncio.run(work)
    finally:
        upstream.close()


def test_an_answer_too_big_for_one_datagram_comes_truncated_at_once_over_udp() -> None:
    # the context's resolver stub would otherwise wait for an answer that never comes
    async def ask() -> dns.message.Message:
        async with _forwarder() as (udp, _):
            query = dns.message.make_query("big.example.", "TXT")
            return await dns.asyncquery.udp(query, "127.0.0.1", timeout=3, port=udp)

    reply = _with_upstream(ask())
    assert reply.flags & dns.flags.TC and not reply.answer, reply


def test_the_same_answer_comes_whole_over_tcp_and_one_connection_serves_several() -> None:
    async def ask() -> list[dns.message.Message]:
        async with _forwarder() as (_, tcp):
            reader, writer = await asyncio.open_connection("127.0.0.1", tcp)
            replies = []
            for name in ("big.example.", "other.example."):
                wire = dns.message.make_query(name, "TXT").to_wire()
                writer.write(len(wire).to_bytes(2, "big") + wire)
                size = int.from_bytes(await reader.readexactly(2), "big")
                replies.append(dns.message.from_wire(await reader.readexactly(size)))
            writer.close()
            return replies

    replies = _with_upstream(ask())
    assert len(replies) == 2
    for reply in replies:
        assert not reply.flags & dns.flags.TC, reply
        assert sum(len(rrset) for rrset in reply.answer) == RECORDS


def test_tcp_clients_past_the_limit_or_sending_junk_are_hung_up_and_others_still_served() -> None:
    async def probe() -> tuple[bytes, bytes, int]:
        async with _forwarder() as (_, tcp):
            idle = [
                await asyncio.open_connection("127.0.0.1", tcp) for _ in range(MAX_TCP_CONNECTIONS)
            ]
            await asyncio.sleep(0.2)  # all of them accepted
            extra_reader, _ = await asyncio.open_connection("127.0.0.1", tcp)
            past_limit = await asyncio.wait_for(extra_reader.read(), 3)  # b"": closed at once
            for _, writer in idle:
                writer.close()
            await asyncio.sleep(0.2)
            reader, writer = await asyncio.open_connection("127.0.0.1", tcp)
            writer.write(b"\x00\x04junk")
            junk = await asyncio.wait_for(reader.read(), 3)  # not DNS: hung up, no answer
            query = dns.message.make_query("big.example.", "TXT")
            reply = await dns.asyncquery.tcp(query, "127.0.0.1", timeout=3, port=tcp)
            return past_limit, junk, sum(len(rrset) for rrset in reply.answer)

    result = _with_upstream(probe())
    assert result == (b"", b"", RECORDS)


def test_code_in_a_public_context_resolves_over_tcp(client: Client) -> None:
    # dig +tcp, Node's c-ares and glibc after a truncated answer all ask the context's
    # resolver over TCP
    code = """
import socket, struct
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p for p in b"pypi.org".split(b".")) + b"\\0"
query += struct.pack(">HH", 1, 1)
with socket.create_connection(("127.0.0.53", 53), timeout=10) as sock:
    sock.sendall(struct.pack(">H", len(query)) + query)
    size = struct.unpack(">H", sock.recv(2, socket.MSG_WAITALL))[0]
    reply = sock.recv(size, socket.MSG_WAITALL)
ident, flags, _, answers = struct.unpack(">HHHH", reply[:8])
(ident, flags & 0x000F, answers > 0)
"""
    result = client.run(code)
    assert result["error"] is None, result
    assert result["items"][0]["text"] == "(4660, 0, True)", result
