"""Why a host name did not resolve in this context: a denial, or a failure that may pass.

glibc reports a name the context's DNS refuses (a name its allowlist leaves out) as
``EAI_AGAIN``, exactly like a resolver that timed out or failed upstream. Only the first is
certain to fail again, so on ``EAI_AGAIN`` the context's resolver is asked once more,
directly, for its answer code: ``REFUSED`` (from the context's forwarder with the extended
error *Prohibited*: the network policy) or no resolver at all is a denial; ``SERVFAIL``, a
timeout or anything else is taken as temporary and left to the installer's own retries.
The question goes to the same resolver the lookup used, so it sends nothing the lookup
did not.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dns.message

REFUSED_BY_POLICY = "refused by policy"  # REFUSED with the extended error Prohibited
REFUSED = "refused"
NO_SUCH_NAME = "no such name"
NO_RESOLVER = "no resolver"  # nothing listens where resolv.conf points
OTHER = "other"  # an answer, SERVFAIL, a timeout: nothing certain
ASK_TIMEOUT_S = 1.0
RESOLV_CONF = "/etc/resolv.conf"


@dataclass(frozen=True)
class Failure:
    """Why a host is not in reach: ``denied`` if it is certain to fail again; in words."""

    denied: bool
    reason: str
    by_policy: bool = False  # the context's network policy said no (its allowlist)


def lookup_failure(host: str, error: int, text: str, answer: str | None) -> Failure:
    """What a ``getaddrinfo`` failure (``error``, ``text``) of ``host`` means, given what
    the resolver answered when asked directly (``answer``, or None if it was not asked)."""
    if error == socket.EAI_NONAME or answer == NO_SUCH_NAME:
        return Failure(True, f"{host} does not resolve here (no such name)")
    if answer == REFUSED_BY_POLICY:
        reason = f"{host} does not resolve here (this context's network policy leaves it out)"
        return Failure(True, reason, by_policy=True)
    if answer == REFUSED:
        return Failure(True, f"{host} does not resolve here (the resolver refuses it)")
    if answer == NO_RESOLVER:
        return Failure(True, f"{host} does not resolve here (this context has no DNS)")
    return Failure(False, f"looking {host} up failed temporarily ({text})")


def resolve(host: str, port: int) -> list[tuple] | Failure:
    """``getaddrinfo`` for a TCP connection to ``host``, or why it failed."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        answer = ask_resolver(host, first_nameserver()) if exc.errno == socket.EAI_AGAIN else None
        return lookup_failure(host, exc.errno, exc.strerror or str(exc), answer)


def read_or_empty(path: str) -> str:
    """The text of a file the context may or may not have; empty when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def first_nameserver(path: str = RESOLV_CONF) -> str | None:
    """The resolver glibc asks first (``nameserver`` lines of ``resolv.conf``)."""
    for line in read_or_empty(path).splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            return fields[1]
    return None


def ask_resolver(host: str, nameserver: str | None, port: int = 53) -> str:
    """One ``A`` question for ``host`` to ``nameserver``: which kind of answer came back."""
    import dns.exception  # only on this rare path: the shim's start stays light (~40 ms)
    import dns.message

    if nameserver is None:
        return NO_RESOLVER
    query = dns.message.make_query(host, "A", use_edns=0)
    try:
        family = socket.AF_INET6 if ":" in nameserver else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(ASK_TIMEOUT_S)
            sock.connect((nameserver, port))  # connected: a closed port is ECONNREFUSED
            sock.send(query.to_wire())
            while True:
                try:
                    reply = dns.message.from_wire(sock.recv(65535))
                except dns.exception.DNSException:
                    continue  # not an answer: keep waiting until the timeout
                if reply.id == query.id:
                    break
    except ConnectionRefusedError:
        return NO_RESOLVER
    except OSError:
        return OTHER  # a timeout, an unreachable resolver: not certain
    return answer_kind(reply)


def answer_kind(reply: dns.message.Message) -> str:
    """The kind of a resolver's reply."""
    import dns.edns
    import dns.rcode

    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return NO_SUCH_NAME
    if rcode != dns.rcode.REFUSED:
        return OTHER
    for option in reply.options:
        if isinstance(option, dns.edns.EDEOption) and option.code == dns.edns.EDECode.PROHIBITED:
            return REFUSED_BY_POLICY
    return REFUSED
