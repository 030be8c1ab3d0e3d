"""Network policies as data: parsing, the server's ceiling, DNS names, nftables rules."""

from __future__ import annotations

import ipaddress

import pytest

from cellbox.sandbox import netpolicy
from cellbox.sandbox.netpolicy import Policy, PolicyError, parse, ruleset, within


def test_parse_the_three_forms_and_describe_them_back():
    assert parse("off") == Policy("off")
    assert parse("public") == Policy("public")
    policy = parse({"allow": ["PyPI.org.", "*.Example.org", "198.51.100.7/24", "2001:db8::/32"]})
    assert policy.kind == "allow"
    assert policy.names == ("pypi.org", "*.example.org")
    assert policy.networks == (
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert parse(policy.describe()) == policy
    assert Policy("public").describe() == "public"
    assert parse({"allow": ["a.example", "a.example", "10.0.0.1"]}).describe() == {
        "allow": ["a.example", "10.0.0.1/32"]
    }


@pytest.mark.parametrize(
    "value",
    [
        "host",  # never asked for by a context
        "on",
        "",
        None,
        1,
        ["off"],
        {},
        {"deny": ["x.example"]},
        {"allow": ["x.example"], "extra": 1},
        {"allow": "x.example"},
        {"allow": [1]},
        {"allow": ["not a name"]},
        {"allow": ["-bad.example"]},
        {"allow": ["*"]},
        {"allow": ["a.*.example"]},
        {"allow": ["300.1.2.3"]},
        {"allow": ["x" * 64 + ".example"]},
        {"allow": ["x.example"] * 0 + [f"h{i}.example" for i in range(257)]},
    ],
)
def test_malformed_values_are_refused_with_a_reason(value):
    with pytest.raises(PolicyError) as caught:
        parse(value)
    assert str(caught.value)


def test_names_match_exactly_or_below_a_star_suffix():
    policy = parse({"allow": ["pypi.org", "*.pythonhosted.org"]})
    assert policy.allows_name("pypi.org")
    assert policy.allows_name("PYPI.ORG.")
    assert policy.allows_name("files.pythonhosted.org")
    assert policy.allows_name("a.b.pythonhosted.org")
    assert not policy.allows_name("pythonhosted.org")  # *. is for subdomains only
    assert not policy.allows_name("www.pypi.org")
    assert not policy.allows_name("evilpythonhosted.org")
    assert not policy.allows_name("pypi.org.evil.example")
    assert Policy("public").allows_name("anything.example")
    assert not Policy("off").allows_name("pypi.org")
    assert not parse({"allow": ["198.51.100.0/24"]}).allows_name("pypi.org")


def test_dns_is_served_only_where_a_name_can_be_allowed():
    assert Policy("public").has_dns
    assert parse({"allow": ["pypi.org"]}).has_dns
    assert not parse({"allow": ["198.51.100.0/24"]}).has_dns
    assert not Policy("off").has_dns


def test_the_server_mode_is_the_ceiling():
    allow = parse({"allow": ["pypi.org"]})
    for policy in (Policy("off"), Policy("public"), allow):
        within(policy, "public")
    within(Policy("off"), "off")
    for policy in (Policy("public"), allow):
        with pytest.raises(PolicyError, match="off"):
            within(policy, "off")
    for policy in (Policy("off"), Policy("public"), allow):
        within(policy, "host")  # a host server allows everything: each may ask for less
        with pytest.raises(PolicyError, match="nft not found"):
            within(policy, "host", unavailable="nft not found")
    within(Policy("host"), "host", unavailable="nft not found")  # asking for nothing


def _output_chain(script: str) -> list[str]:
    body = script.split("chain output {", 1)[1].split("\n  }", 1)[0]
    return [line.strip() for line in body.strip().splitlines()]


def test_public_denies_internal_ranges_and_the_host_then_accepts():
    script = ruleset(Policy("public"), ["192.0.2.2", "10.1.2.3", "fd00::2", "2001:db8::5"])
    chain = _output_chain(script)
    assert chain[0] == "type filter hook output priority filter; policy drop;"
    assert chain[1] == 'oifname "lo" accept'  # the context's own loopback only
    assert chain[-2:] == ["accept", "goto deny"]
    v4 = chain[2]
    for denied in (
        "127.0.0.0/8",
        "169.254.0.0/16",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "224.0.0.0/4",
        "192.0.2.2",
    ):
        assert denied in v4, denied
    assert v4.endswith("goto deny")
    assert "10.1.2.3" not in v4  # inside 10/8 already (nft refuses overlaps)
    v6 = chain[3]
    for denied in ("fe80::/10", "fc00::/7", "ff00::/8", "::/127", "2001:db8::5"):
        assert denied in v6, denied
    assert "fd00::2" not in v6  # inside fc00::/7
    assert "reject with tcp reset" in script  # fail fast, never a silent drop
    assert "reject with icmpx type admin-prohibited" in script


def test_allowlist_accepts_only_its_sets_and_off_accepts_nothing():
    script = ruleset(parse({"allow": ["pypi.org", "192.168.7.0/24", "2001:db8::/48"]}))
    chain = _output_chain(script)
    assert "accept" not in chain
    assert "ip daddr @allowed4 accept" in chain and "ip6 daddr @allowed6 accept" in chain
    assert "add element inet cellbox allowed4 { 192.168.7.0/24 }" in script
    assert "add element inet cellbox allowed6 { 2001:db8::/48 }" in script
    off = _output_chain(ruleset(Policy("off")))
    assert off[-1] == "goto deny" and not any("@allowed" in line for line in off)
    assert not any(line == "accept" for line in off)


def test_rules_replace_the_table_in_one_transaction():
    script = ruleset(Policy("off"))
    lines = script.splitlines()
    assert lines[:2] == ["table inet cellbox {}", "delete table inet cellbox"]


def test_resolved_addresses_go_to_their_family_set():
    script = netpolicy.allow_addresses(["203.0.113.80", "2001:db8::1", "203.0.113.81"])
    assert script == (
        "add element inet cellbox resolved4 { 203.0.113.80, 203.0.113.81 }\n"
        "add element inet cellbox resolved6 { 2001:db8::1 }\n"
    )
    assert netpolicy.allow_addresses([]) == ""
