"""The check before an install, for real: the context's resolver asked over real sockets, an
allowlist that names ``pypi.org`` but not the host of its files, and a resolver failure
that may pass.

Traffic: loopback (resolvers of this test's own) and the package registries only.
"""

from __future__ import annotations

import ast
import os
import random
import socket
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import pytest

from cellbox.packages import lookup
from cellbox.sandbox.dns import policy_refusal
from tests.conftest import UNPUBLISHED, Client, Server
from tests.dns_server import DnsServer
from tests.security.conftest import HostServer, skip_unless_full

INSTALL_MS = 60_000
FILES = "files.pythonhosted.org"

PY_INSTALL = """
import os, subprocess, sys
done = subprocess.run([sys.executable, '-m', 'pip', 'install', {spec!r}], capture_output=True,
                      text=True, timeout=50, env={{**os.environ, **{env!r}}})
(done.returncode, done.stdout + done.stderr)
"""


def _rcode(rcode: dns.rcode.Rcode):
    def answer(query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.set_rcode(rcode)
        return reply

    return answer


def test_the_resolver_is_asked_directly_and_its_answer_told_apart():
    kinds = {}
    for name, answer in {
        "policy": policy_refusal,
        "servfail": _rcode(dns.rcode.SERVFAIL),
        "nxdomain": _rcode(dns.rcode.NXDOMAIN),
        "silent": lambda query: None,
    }.items():
        resolver = DnsServer(answer)
        try:
            kinds[name] = lookup.ask_resolver(FILES, "127.0.0.1", resolver.address[1])
            assert resolver.asked == [FILES], name
        finally:
            resolver.close()
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the context has no DNS
    kinds["closed"] = lookup.ask_resolver(FILES, "127.0.0.1", port)
    assert kinds == {
        "policy": lookup.REFUSED_BY_POLICY,
        "servfail": lookup.OTHER,
        "nxdomain": lookup.NO_SUCH_NAME,
        "silent": lookup.OTHER,  # after ASK_TIMEOUT_S: slow is never a denial
        "closed": lookup.NO_RESOLVER,
    }


def _install(client: Client, context_id: str, spec: str, **env: str) -> tuple[int, str]:
    result = client.run(
        PY_INSTALL.format(spec=spec, env=env), context_id=context_id, timeout_ms=INSTALL_MS
    )
    assert result["error"] is None, result
    return ast.literal_eval(result["items"][0]["text"])


def _new(client: Client, network: object) -> str:
    response = client.post("/contexts", json={"language": "python", "network": network})
    assert response.status_code == 201, response.text
    assert response.json()["network"] == network
    return response.json()["id"]


@pytest.mark.slow
def test_an_allowlist_without_the_file_host_fails_at_once_and_says_what_to_add(
    client: Client,
):
    client.timeout = INSTALL_MS / 1000 + 30
    public = _new(client, "public")
    allow = _new(client, {"allow": ["pypi.org"]})
    try:
        code, output = _install(client, public, "tabulate")
        assert code == 0, output
        wheels = client.run("import os; os.environ['CONTEXT_WHEEL_CACHE']", context_id=public)
        wheels_dir = ast.literal_eval(wheels["items"][0]["text"])
        deadline = time.monotonic() + 30
        while not any(n.startswith("tabulate-") for n in os.listdir(wheels_dir)):
            assert time.monotonic() < deadline, "the server did not cache the tabulate wheel"
            time.sleep(0.2)
        # the context's own resolver refuses the file host, and says it is the policy
        said = client.run(
            f"from cellbox.packages import lookup\nlookup.ask_resolver({FILES!r}, '127.0.0.53')",
            context_id=allow,
        )
        assert said["items"][0]["text"] == repr(lookup.REFUSED_BY_POLICY), said
        # in no cache: uv ran offline, no retries
        code, output = _install(client, allow, UNPUBLISHED)
        assert code != 0, output
        assert f'Add "{FILES}" to this context\'s allowlist, next to "pypi.org"' in output
        assert "network was disabled" in output and "retries" not in output, output
        # a wheel of the shared cache still installs (offline)
        code, output = _install(client, allow, "tabulate")
        assert code == 0, output
        imported = client.run("import tabulate; tabulate.__name__", context_id=allow)
        assert imported["items"][0]["text"] == "'tabulate'", imported
    finally:
        for context_id in (public, allow):
            client.delete(f"/contexts/{context_id}")


@pytest.mark.slow
def test_a_resolver_failure_that_may_pass_lets_uv_try_and_says_so(tmp_path: Path):
    # The host's resolver for this one server answers SERVFAIL for everything, as when
    # upstream is down: a resolv.conf of its own, bound in the server's mount namespace.
    address = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {address}\n")
    server: Server = HostServer(f"mount --bind {conf} /etc/resolv.conf", pool_typescript=0)
    server.start()
    try:
        skip_unless_full(server)  # the binding and the resolver's port 53 need the root it has
        failing_resolver = DnsServer(_rcode(dns.rcode.SERVFAIL), address, 53)
        try:
            with server.client() as client:
                client.timeout = INSTALL_MS / 1000 + 30
                context_id = _new(client, "public")
                code, output = _install(client, context_id, UNPUBLISHED, UV_HTTP_RETRIES="0")
        finally:
            failing_resolver.close()
    finally:
        server.stop()
        server.cleanup()
    assert code != 0, output
    assert "pypi.org" in failing_resolver.asked
    assert "network was disabled" not in output, output  # uv was not sent offline
    assert "cellbox: looking pypi.org up failed temporarily" in output, output
    assert "not a denial by this context's network policy" in output, output
