"""Hostile cases of the sandbox and the network found by an adversarial audit.

A name on an allowlist that resolves to the host or an internal range must not open it (the
denials are checked by reading the rules installed in the context's namespace, never by
sending packets there).
"""

from __future__ import annotations

from cellbox.sandbox.netpolicy import parse, ruleset
from tests.conftest import Client
from tests.security.conftest import worker_host_pid
from tests.security.test_network import _ruleset


def _chain(script: str) -> list[str]:
    """The rules of the output chain, as written or as ``nft list`` shows them."""
    lines = [line.strip() for line in script.split("chain output {", 1)[1].splitlines()]
    return lines[: lines.index("}")]


def test_resolved_addresses_are_accepted_only_after_the_denials() -> None:
    chain = _chain(ruleset(parse({"allow": ["a.example", "10.9.0.0/16"]}), ["192.0.2.2"]))
    listed = chain.index("ip daddr @allowed4 accept")
    denied = next(i for i, line in enumerate(chain) if "169.254.0.0/16" in line)
    resolved = chain.index("ip daddr @resolved4 accept")
    assert listed < denied < resolved and "192.0.2.2" in chain[denied]
    assert chain.index("ip6 daddr @allowed6 accept") < chain.index("ip6 daddr @resolved6 accept")


def test_an_allowlisted_name_opens_only_its_public_addresses(client: Client) -> None:
    allow = {"allow": ["pypi.org", "198.51.100.0/24"]}
    ctx = client.context("python", network=allow)
    try:
        looked_up = client.run("import socket; socket.gethostbyname('pypi.org')", context_id=ctx)
        assert looked_up["error"] is None, looked_up
        address = looked_up["items"][0]["text"].strip("'")
        rules = _ruleset(worker_host_pid(client, ctx))
        chain = _chain(rules)
        denial = next(i for i, line in enumerate(chain) if "127.0.0.0/8" in line)
        assert chain.index("ip daddr @allowed4 accept") < denial
        assert denial < chain.index("ip daddr @resolved4 accept")
        sets = {
            name: rules.split(f"set {name} {{", 1)[1].split("\n\t}", 1)[0]
            for name in ("allowed4", "resolved4")
        }
        assert address in sets["resolved4"] and address not in sets["allowed4"]
        assert "198.51.100.0/24" in sets["allowed4"]
    finally:
        client.delete(f"/contexts/{ctx}")
