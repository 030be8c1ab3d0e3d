"""Pure parts of clustering: ids, peer specs, placement order, memory headroom, outcomes."""

from __future__ import annotations

import pytest

from cellbox import metrics
from cellbox.cluster.capacity import (
    LOW_MEMORY_BYTES,
    Capacity,
    memory_available_bytes,
    placement_order,
)
from cellbox.cluster.identity import (
    check_node_id,
    default_node_id,
    new_context_id,
    owner_of,
    parse_peers,
)
from cellbox.cluster.peers import Peer

GIB = 1 << 30


def test_context_ids_name_their_node():
    context_id = new_context_id("cellbox-2")
    assert context_id.startswith("ctx_cellbox-2_")
    assert owner_of(context_id) == "cellbox-2"
    assert new_context_id("a") != new_context_id("a")
    for foreign in ("ctx_nope", "ctx_x", "", "ctx__0123456789abcdef01234567", "ctx_A_" + "0" * 24):
        assert owner_of(foreign) is None


@pytest.mark.parametrize("good", ["a", "cellbox-0", "node7", "x" * 63])
def test_node_ids_are_dns_labels(good):
    assert check_node_id(good) == good


@pytest.mark.parametrize("bad", ["", "-a", "a-", "A", "a_b", "a.b", "x" * 64])
def test_bad_node_ids_are_refused(bad):
    with pytest.raises(ValueError, match="DNS label"):
        check_node_id(bad)


def test_default_node_id_is_usable():
    assert check_node_id(default_node_id())


def test_peer_specs():
    assert parse_peers("http://a:1, http://b:2/ dns:cellbox-peers.ns.svc:8000") == (
        ["http://a:1", "http://b:2"],
        [("cellbox-peers.ns.svc", 8000)],
    )
    assert parse_peers("") == ([], [])
    for bad in ("a:1", "dns:x", "ftp://a", "dns:x:port"):
        with pytest.raises(ValueError, match="neither a URL"):
            parse_peers(bad)


def test_placement_prefers_free_slots_then_memory_then_this_node():
    nodes = [
        Capacity("a", live=5, max_contexts=10, memory_available_bytes=8 * GIB),
        Capacity("b", live=2, max_contexts=10, memory_available_bytes=8 * GIB),
        Capacity("c", live=2, max_contexts=10, memory_available_bytes=4 * GIB),
        Capacity("d", live=2, max_contexts=10, memory_available_bytes=8 * GIB + 1000),
    ]
    # b and d differ by less than a memory step: this node (d) goes first
    assert placement_order(nodes, "d") == ["d", "b", "c", "a"]
    assert placement_order(nodes, "a") == ["b", "d", "c", "a"]


def test_full_or_starved_nodes_are_tried_last():
    nodes = [
        Capacity("full", live=10, max_contexts=10, memory_available_bytes=8 * GIB),
        Capacity("starved", live=0, max_contexts=10, memory_available_bytes=LOW_MEMORY_BYTES - 1),
        Capacity("busy", live=9, max_contexts=10, memory_available_bytes=8 * GIB),
    ]
    assert placement_order(nodes, "full") == ["busy", "starved", "full"]


def test_memory_headroom_reads_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:    2048 kB\n")
    assert 0 <= memory_available_bytes(str(meminfo)) <= 2048 * 1024
    assert memory_available_bytes() > 0


def test_peer_reads_its_stats_from_metrics_text():
    metrics.set_node("n9")
    metrics.watch(
        lambda: metrics.NodeStats(
            live={"python": 3, "typescript": 1}, max_contexts=50, memory_available_bytes=7 * GIB
        )
    )
    peer = Peer("http://127.0.0.1:1")
    peer.update(metrics.exposition().decode())
    assert peer.reachable
    assert peer.capacity() == Capacity("n9", 4, 50, 7 * GIB)


@pytest.mark.parametrize(
    ("failed", "stop", "error", "outcome"),
    [
        (False, "timeout", None, "ok"),
        (True, None, "ZeroDivisionError", "error"),
        (True, "timeout", "TimeoutError", "timeout"),
        (True, "interrupt", "KeyboardInterrupt", "interrupted"),
        (True, "disconnect", "KeyboardInterrupt", "interrupted"),
        (True, "deleted", "ContextDeleted", "cancelled"),
        (True, None, "ContextDied", "died"),
    ],
)
def test_execution_outcomes(failed, stop, error, outcome):
    assert metrics.outcome_of(failed, stop, error) == outcome


def test_transport_keeps_connections_and_streams_both_ways():
    """The forwarding transport against a bare HTTP/1.1 server: one connection for many
    requests, a body of unknown length sent chunked, an answer read as it arrives."""
    import asyncio

    import httpx

    from cellbox.cluster.transport import StreamTransport

    connections = []
    received = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.decode().split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
            body = b""
            if "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                while size := int((await reader.readline()).strip(), 16):
                    body += await reader.readexactly(size)
                    await reader.readline()
                await reader.readline()
            received.append((lines[0], body))
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for piece in (b"one ", b"two"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")

    async def main() -> list[bytes]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = StreamTransport()
        answers = []

        async def pieces():
            yield b"abc"
            yield b"def"

        for content in (b"plain", pieces(), b""):
            request = httpx.Request("POST", f"http://127.0.0.1:{port}/x?q=1", content=content)
            response = await transport.handle_async_request(request)
            answers.append(b"".join([chunk async for chunk in response.aiter_raw()]))
            await response.aclose()
        await transport.aclose()
        server.close()
        return answers

    assert asyncio.run(main()) == [b"one two"] * 3
    assert received == [("POST /x?q=1 HTTP/1.1", b) for b in (b"plain", b"abcdef", b"")]
    assert len(connections) == 1


def test_transport_passes_on_an_answer_given_before_the_body_was_read():
    """A peer that answers at once (a 413 for an upload past its limit) and then only drops
    what still comes: the answer is the response, and the rest of the body is not sent."""
    import asyncio

    import httpx

    from cellbox.cluster.transport import StreamTransport

    dropped = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno")
        await writer.drain()
        size = 0
        while chunk := await reader.read(1 << 16):
            size += len(chunk)
        dropped.append(size)
        writer.close()

    async def main() -> tuple[int, bytes]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = StreamTransport()

        async def pieces():
            for _ in range(512):
                yield bytes(1 << 20)
                await asyncio.sleep(0)

        request = httpx.Request("PUT", f"http://127.0.0.1:{port}/up", content=pieces())
        response = await transport.handle_async_request(request)
        body = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        await transport.aclose()
        while not dropped:
            await asyncio.sleep(0.01)
        server.close()
        return response.status_code, body

    assert asyncio.run(main()) == (413, b"no")
    assert dropped[0] < 256 << 20  # it stopped sending once answered
