"""7b. `--network host`: contexts share the host's network unless they ask for less.

Under `host` a context may still ask for `off`, `public` or an allowlist and gets it, set up
exactly as under a `public` server (a namespace of its own, nftables, slirp4netns, the DNS
forwarder), but only once the first such context comes: a host server that never sees one
runs none of it.

Traffic goes only to listeners of this test on the host's loopback and own address and to
the package registries; every other denial is checked in the rules installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from cellbox.sandbox.netpolicy import DENIED_V4, DENIED_V6
from tests.conftest import UNPUBLISHED, Client, Server
from tests.security.conftest import Listener, py_value, start_server, worker_host_pid
from tests.security.test_network import (
    CHEAP,
    CONNECTED,
    PY_CONNECT,
    _covered,
    _denied_fast,
    _descendants,
    _new,
    _ruleset,
    host_address,
)

PY_INSTALLS = f"""
import subprocess, sys
runs = {{
    'pip': [sys.executable, '-m', 'pip', 'install', {UNPUBLISHED!r}],
    'uv pip': ['uv', 'pip', 'install', {UNPUBLISHED!r}],
}}
{{name: (r.returncode, r.stdout + r.stderr) for name, argv in runs.items()
 for r in [subprocess.run(argv, capture_output=True, text=True, timeout=60)]}}
"""
NO_INDEX = "no network access to the package index"


@pytest.fixture(scope="module")
def host_server() -> Iterator[Server]:
    server = start_server(network="host", **CHEAP)
    yield server
    server.stop()
    server.cleanup()


@pytest.fixture
def listener() -> Iterator[Listener]:
    """One listener on every address: loopback and the host's own interfaces."""
    made = Listener(host="0.0.0.0")
    yield made
    made.close()


def _context_policies(client: Client) -> dict:
    network = client.get("/info").json()["network"]
    assert network["mode"] == "host", network
    return network["context_policies"]


def _slirps(server: Server) -> int:
    assert server.process is not None
    count = 0
    for pid in _descendants(server.process.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                count += b"slirp4netns" in f.read()
        except OSError:
            continue
    return count


def _connect(client: Client, context_id: str, hosts: list[str], port: int) -> dict:
    return py_value(client, PY_CONNECT.format(hosts=hosts, port=port), context_id=context_id)


@contextlib.contextmanager
def _context(client: Client, network: object = None) -> Iterator[dict]:
    """A new Python context (asking for ``network``), deleted when the block ends."""
    context = _new(client, "python", network)
    try:
        yield context
    finally:
        client.delete(f"/contexts/{context['id']}")


def test_a_context_without_a_policy_shares_the_host_and_nothing_is_set_up(
    host_server: Server, listener: Listener
):
    with host_server.client() as client:
        policies = _context_policies(client)
        assert policies["state"].startswith("not checked yet"), policies
        assert "slirp4netns+nftables" in policies["mechanism"]
        info = client.get("/info").json()["network"]
        assert any("--network host" in w for w in info["warnings"]), info
        assert "CELLBOX NETWORK: host" in host_server.read_log()
        with _context(client) as context:
            assert context["network"] == "host"
            outcome = _connect(client, context["id"], ["127.0.0.1"], listener.port)
        assert outcome["127.0.0.1"] == CONNECTED, outcome
        assert listener.accepted == 1
        assert _context_policies(client)["state"].startswith("not checked yet")
    assert _slirps(host_server) == 0


def test_an_off_context_gets_an_empty_namespace_also_after_a_restart(
    host_server: Server, listener: Listener
):
    hosts = ["127.0.0.1", host_address()]
    with host_server.client() as client:
        with _context(client, "off") as context:
            assert context["network"] == "off"
            before = _connect(client, context["id"], hosts, listener.port)
            response = client.post(f"/contexts/{context['id']}/restart")
            assert response.status_code == 200, response.text
            after = _connect(client, context["id"], hosts, listener.port)
            assert client.get(f"/contexts/{context['id']}").json()["network"] == "off"
        assert _context_policies(client)["state"] == "available"
    for outcome in (before, after):
        assert outcome["interfaces"] == ["lo"], outcome
        for host in hosts:
            assert _denied_fast(outcome[host]), (host, outcome)
    assert listener.accepted == 0


def test_a_public_context_reaches_neither_the_host_nor_internal_ranges(
    host_server: Server, listener: Listener
):
    host = host_address()
    with host_server.client() as client:
        with _context(client, "public") as context:
            assert context["network"] == "public"
            outcome = _connect(client, context["id"], ["127.0.0.1", host], listener.port)
            rules = _ruleset(worker_host_pid(client, context["id"]))
            resolved = py_value(
                client, "__import__('socket').gethostbyname('pypi.org')", context_id=context["id"]
            )
    for target in ("127.0.0.1", host):
        assert _denied_fast(outcome[target]), (target, outcome)
    assert listener.accepted == 0
    assert "tap0" in outcome["interfaces"], outcome
    assert resolved  # DNS through the forwarder, as under a public server
    # the same rules as a public server's (whose ranges test_network checks against the
    # contract): every range the policy denies, and this host's own address
    v4 = next(line for line in rules.splitlines() if "ip daddr" in line)
    v6 = next(line for line in rules.splitlines() if "ip6 daddr" in line)
    for denied in (*DENIED_V4, f"{host}/32"):
        assert _covered(v4, denied), denied
    for denied in DENIED_V6:
        assert _covered(v6, denied), denied
    assert "policy drop;" in rules and "goto deny" in v4 and "goto deny" in v6


def test_an_allowlist_context_reaches_only_what_it_names(host_server: Server, listener: Listener):
    host = host_address()
    with host_server.client() as client:
        for bad in ("host", "bogus", {"allow": "pypi.org"}):
            response = client.post("/contexts", json={"network": bad})
            assert response.status_code == 400, (bad, response.text)
            assert [e["field"] for e in response.json()["errors"]] == ["network"]
        with _context(client, {"allow": [f"{host}/32"]}) as context:
            assert context["network"] == {"allow": [f"{host}/32"]}
            outcome = _connect(client, context["id"], ["127.0.0.1", host], listener.port)
    assert outcome[host] == CONNECTED, outcome
    assert _denied_fast(outcome["127.0.0.1"]), outcome  # its own loopback, never the host's
    assert listener.accepted == 1


def test_installs_without_the_registry_in_reach_fail_at_once_and_say_why(host_server: Server):
    """pip, uv pip and %pip: no retries against a registry the policy leaves out."""
    with host_server.client() as client:
        with _context(client, {"allow": ["*.example.org"]}) as context:
            results = py_value(client, PY_INSTALLS, context_id=context["id"], timeout_ms=60000)
            magic = client.run(
                f"%pip install {UNPUBLISHED}", context_id=context["id"], timeout_ms=60000
            )
    for name, (code, output) in results.items():
        assert code != 0, (name, output)
        assert NO_INDEX in output and "pypi.org does not resolve here" in output, (name, output)
        assert "retries" not in output, (name, output)  # uv ran offline: nothing retried
    magic_output = "\n".join(magic["logs"]["stdout"] + magic["logs"]["stderr"])
    assert NO_INDEX in magic_output and UNPUBLISHED in magic_output, magic
