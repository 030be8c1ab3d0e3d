"""7. The network switch: --network off gives user code an empty network namespace (egress to
a listener of this test fails); --network on lets the same connection through."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.conftest import Client, Server
from tests.security.conftest import Contexts, Listener, isolation, py_value, ts_json

LANGUAGES = ["python", "typescript"]

PY_CONNECT = """
import socket
outcome = {{}}
for host in {hosts!r}:
    try:
        with socket.create_connection((host, {port}), timeout=3) as sock:
            outcome[host] = 'connected: ' + sock.recv(100).decode()
    except OSError as exc:
        outcome[host] = exc.errno or str(exc)
outcome['interfaces'] = sorted(name for _, name in socket.if_nameindex())
outcome
"""

TS_CONNECT = """
const net = require('node:net');
const os = require('node:os');
const outcome = {{}};
for (const host of {hosts!r}) {{
  outcome[host] = await new Promise((resolve) => {{
    const sock = net.connect({{ host, port: {port}, timeout: 3000 }});
    let data = '';
    sock.on('data', (chunk) => {{ data += chunk; }});
    sock.on('end', () => resolve('connected: ' + data));
    sock.on('timeout', () => {{ sock.destroy(); resolve('ETIMEDOUT'); }});
    sock.on('error', (err) => resolve(err.code));
  }});
}}
outcome.interfaces = Object.keys(os.networkInterfaces()).sort();
return outcome;
"""


def _host_address() -> str:
    """An address of this host other than loopback (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
            return sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"


@pytest.fixture
def wide_listener() -> Iterator[Listener]:
    """One listener on every address: loopback and the host's own interfaces."""
    made = Listener(host="0.0.0.0")
    yield made
    made.close()


def _attempt(client: Client, language: str, hosts: list[str], port: int) -> dict:
    made = Contexts(client)
    try:
        context_id = made.new(language)
        if language == "python":
            return py_value(
                client, PY_CONNECT.format(hosts=hosts, port=port), context_id=context_id
            )
        return ts_json(client, TS_CONNECT.format(hosts=hosts, port=port), context_id=context_id)
    finally:
        made.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_network_off_blocks_egress(offline: Server, wide_listener: Listener, language: str):
    assert isolation(offline)["network"] == "off"
    hosts = sorted({"127.0.0.1", _host_address()})
    with offline.client() as client:
        outcome = _attempt(client, language, hosts, wide_listener.port)
    for host in hosts:
        assert not str(outcome[host]).startswith("connected"), (host, outcome)
    assert wide_listener.accepted == 0
    assert outcome["interfaces"] == ["lo"], outcome  # nothing but its own loopback


@pytest.mark.parametrize("language", LANGUAGES)
def test_network_on_lets_the_same_connection_through(
    limited: Server, wide_listener: Listener, language: str
):
    assert isolation(limited)["network"] == "on"
    with limited.client() as client:
        outcome = _attempt(client, language, ["127.0.0.1"], wide_listener.port)
    assert outcome["127.0.0.1"] == "connected: " + Listener.GREETING.decode(), outcome
    assert wide_listener.accepted == 1
