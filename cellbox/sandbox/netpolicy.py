"""Network policies of contexts, as data: parsing, the server's ceiling, nftables rules, DNS names.

Pure (no I/O): :mod:`cellbox.sandbox.network` applies what this module computes.

A policy is ``off`` (loopback only), ``public`` (the internet, never the host or internal
ranges) or an allowlist (only the DNS names and address ranges it names, on any port).
Every policy is one nftables table in the context's own network namespace: an ``output``
chain with a default of drop, whose last word for anything not allowed is a reject, so a
denied connection fails at once instead of hanging.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name

OFF = "off"
PUBLIC = "public"
HOST = "host"
SERVER_MODES = (OFF, PUBLIC, HOST)

TABLE = "cellbox"
DNS_ADDRESS = "127.0.0.53"  # the context's resolver: a forwarder socket in its namespace
MAX_ALLOW_ENTRIES = 256

# Never reachable from `public`: the host's loopback (only the context's own `lo` is), the
# cloud metadata and link-local ranges, private and shared ranges, multicast, broadcast.
DENIED_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",  # reserved, and 255.255.255.255 with it
)
DENIED_V6 = (
    "::/127",  # unspecified and loopback
    "::ffff:0:0/96",  # IPv4-mapped: the IPv4 rules decide for those
    "64:ff9b::/96",  # NAT64 could carry a private IPv4 address
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(ValueError):
    """A context's ``network`` value that is malformed or more than the server allows."""


@dataclass(frozen=True)
class Policy:
    """What one context may reach. ``names``/``networks`` only for an allowlist."""

    kind: str  # off | public | allow | host
    names: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    def describe(self) -> str | dict[str, list[str]]:
        """As the API shows it (and accepts it)."""
        if self.kind != "allow":
            return self.kind
        return {"allow": [*self.names, *(str(n) for n in self.networks)]}

    def allows_name(self, name: str) -> bool:
        """Does the allowlist name ``name`` (in DNS text form: exactly, or under a ``*.``
        entry)?"""
        if self.kind == PUBLIC:
            return True
        if self.kind != "allow" or "\\" in name:
            # an escape: "a\\.example.com" is ONE label, "a.example", right under "com"
            return False
        name = name.rstrip(".").lower()
        for entry in self.names:
            if entry.startswith("*."):
                if name.endswith(entry[1:]) and len(name) > len(entry) - 1:
                    return True
            elif name == entry:
                return True
        return False

    @property
    def reaches_the_internet(self) -> bool:
        """Can the code reach any public host (so also a package index) by itself?"""
        return self.kind in (PUBLIC, HOST)

    @property
    def has_dns(self) -> bool:
        return self.kind == PUBLIC or (self.kind == "allow" and bool(self.names))


def _name(entry: str) -> str | None:
    """``entry`` as a lower-case DNS name (``*.`` prefix allowed), or None if it is none.

    An internationalized name is taken in its ASCII form (``bücher.example`` is
    ``xn--bcher-kva.example``), which is what a lookup asks for.
    """
    name = entry.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = dns.name.from_unicode(name).to_text(omit_final_dot=True)
        except (dns.exception.DNSException, UnicodeError):
            return None
    labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # looks like an address, and is not a valid one
    return name


def parse(value: Any) -> Policy:
    """The API's ``network`` value as a Policy; ``PolicyError`` says what is wrong."""
    if isinstance(value, str):
        if value in (OFF, PUBLIC):
            return Policy(value)
        raise PolicyError(f'must be "off", "public" or {{"allow": [...]}}, not {value!r}')
    if not isinstance(value, dict) or set(value) != {"allow"}:
        raise PolicyError('must be "off", "public" or an object with one key, "allow"')
    entries = value["allow"]
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise PolicyError('"allow" must be a list of DNS names and address ranges')
    if len(entries) > MAX_ALLOW_ENTRIES:
        raise PolicyError(f'"allow" has more than {MAX_ALLOW_ENTRIES} entries')
    names: list[str] = []
    networks: list[Network] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            name = _name(entry)
            if name is None:
                raise PolicyError(
                    f"{entry!r} is neither a DNS name (exact or *.suffix) nor an address range"
                ) from None
            if name not in names:
                names.append(name)
        else:
            if getattr(network.network_address, "scope_id", None) is not None:
                # a zone names an interface of one host; rules match addresses, not zones
                raise PolicyError(f"{entry!r}: an address range cannot name a zone (%...)")
            if network not in networks:
                networks.append(network)
    return Policy("allow", tuple(names), tuple(networks))


# How much each mode or policy may reach; a context may ask for what its server gives or less.
# An allowlist counts as ``public``: a server that filters for a context can filter to a list.
_REACH = {OFF: 0, "allow": 1, PUBLIC: 1, HOST: 2}


def within(policy: Policy, server_mode: str, unavailable: str | None = None) -> None:
    """``PolicyError`` if ``policy`` asks for more than a server in ``server_mode`` gives.

    ``unavailable``: why this server cannot give a context a network namespace of its own
    (a ``host`` server without the tools); then only the server's own mode is possible.
    """
    if _REACH[policy.kind] > _REACH[server_mode]:
        raise PolicyError(
            'this server runs with the network off; only "off" is allowed '
            "(start it with --network public for more)"
        )
    if unavailable is not None and policy.kind != server_mode:
        raise PolicyError(
            f"this server runs with --network {server_mode} and cannot give a context a "
            f'network of its own here ({unavailable}); omit "network" to share the host\'s'
        )


def default(server_mode: str) -> Policy:
    """The policy of a context that asks for none."""
    return Policy(server_mode)


def _set(addresses: Iterable[str]) -> str:
    return "{ " + ", ".join(addresses) + " }"


def _allow_set(name: str, kind: str) -> list[str]:
    # auto-merge: an address inside a range already there (or twice in one answer) is no error
    return [f"  set {name} {{", f"    type {kind}", "    flags interval", "    auto-merge", "  }"]


def _denials(host_addresses: Iterable[str]) -> list[str]:
    """Rules that send the internal ranges and the host's own addresses to the reject."""
    v4 = list(DENIED_V4)
    v6 = list(DENIED_V6)
    for address in host_addresses:
        ip = ipaddress.ip_address(address)
        ranges = v4 if ip.version == 4 else v6
        if not any(ip in ipaddress.ip_network(r) for r in ranges):
            ranges.append(str(ip))  # nft refuses an address inside a range of the set
    return [f"    ip daddr {_set(v4)} goto deny", f"    ip6 daddr {_set(v6)} goto deny"]


def ruleset(policy: Policy, host_addresses: Iterable[str] = ()) -> str:
    """The nftables script that makes the context's namespace obey ``policy``.

    Atomic when given to ``nft -f``: it creates the table (so the delete cannot fail),
    deletes it with whatever it held, and builds it afresh in the same transaction.
    ``host_addresses``: the host's own addresses, denied like loopback to ``public`` and to
    the names of an allowlist: what a listed name resolves to (``resolved`` sets, filled by
    the DNS forwarder) never opens an internal range or the host, which only a range the
    allowlist names itself (``allowed`` sets) may.
    """
    lines = [
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        *_allow_set("allowed4", "ipv4_addr"),
        *_allow_set("allowed6", "ipv6_addr"),
        *_allow_set("resolved4", "ipv4_addr"),
        *_allow_set("resolved6", "ipv6_addr"),
        "  chain deny {",
        "    meta l4proto tcp reject with tcp reset",
        "    reject with icmpx type admin-prohibited",
        "  }",
        "  chain output {",
        "    type filter hook output priority filter; policy drop;",
        '    oifname "lo" accept',
    ]
    if policy.kind == PUBLIC:
        lines += [*_denials(host_addresses), "    accept"]
    elif policy.kind == "allow":
        lines += [
            "    ip daddr @allowed4 accept",
            "    ip6 daddr @allowed6 accept",
            *_denials(host_addresses),
            "    ip daddr @resolved4 accept",
            "    ip6 daddr @resolved6 accept",
        ]
    lines += ["    goto deny", "  }", "}"]
    v4_nets = [str(n) for n in policy.networks if n.version == 4]
    v6_nets = [str(n) for n in policy.networks if n.version == 6]
    if v4_nets:
        lines.append(f"add element inet {TABLE} allowed4 {_set(v4_nets)}")
    if v6_nets:
        lines.append(f"add element inet {TABLE} allowed6 {_set(v6_nets)}")
    return "\n".join(lines) + "\n"


def allow_addresses(addresses: Iterable[str]) -> str:
    """The nftables script that adds resolved addresses of allowed names to their sets."""
    v4: list[str] = []
    v6: list[str] = []
    for address in addresses:
        ip = ipaddress.ip_address(address)
        (v4 if ip.version == 4 else v6).append(str(ip))
    lines = []
    if v4:
        lines.append(f"add element inet {TABLE} resolved4 {_set(v4)}")
    if v6:
        lines.append(f"add element inet {TABLE} resolved6 {_set(v6)}")
    return "\n".join(lines) + ("\n" if lines else "")
