"""Pure parts of the check before an install: which host serves an index's files, what a
failed lookup means (a denial, or a failure that may pass), and what the user is told."""

from __future__ import annotations

import socket

import dns.edns
import dns.message
import dns.rcode

from cellbox.packages import lookup
from cellbox.packages.lookup import Failure, answer_kind, lookup_failure
from cellbox.packages.reach import (
    DEFAULT_INDEX,
    files_out_of_reach,
    files_url,
    index_out_of_reach,
    temporary,
)
from cellbox.sandbox.dns import policy_refusal
from cellbox.sandbox.netpolicy import parse


def test_pypi_serves_its_files_from_its_own_host_other_indexes_are_left_to_uv():
    assert files_url(DEFAULT_INDEX) == "https://files.pythonhosted.org/"
    assert files_url("https://PyPI.org/simple/") == "https://files.pythonhosted.org/"
    assert files_url("https://test.pypi.org/simple") == "https://test-files.pythonhosted.org/"
    for other in ("https://mirror.example/simple", "http://localhost:8080/", "file:///wheels"):
        assert files_url(other) is None, other


def _reply(rcode: dns.rcode.Rcode, *, edns: bool = True) -> dns.message.Message:
    query = dns.message.make_query("files.pythonhosted.org", "A", use_edns=0 if edns else None)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return dns.message.from_wire(response.to_wire())


def test_the_forwarders_refusal_is_told_apart_from_a_resolvers():
    query = dns.message.make_query("files.pythonhosted.org", "A", use_edns=0)
    on_the_wire = dns.message.from_wire(policy_refusal(query).to_wire())
    assert answer_kind(on_the_wire) == lookup.REFUSED_BY_POLICY
    # glibc asks without EDNS: a plain REFUSED then, never an option it did not ask for
    plain = policy_refusal(dns.message.make_query("x.example", "A", use_edns=None))
    assert plain.rcode() == dns.rcode.REFUSED and plain.edns < 0
    assert answer_kind(_reply(dns.rcode.REFUSED)) == lookup.REFUSED
    blocked = _reply(dns.rcode.REFUSED)
    blocked.use_edns(0, options=[dns.edns.EDEOption(dns.edns.EDECode.BLOCKED)])
    assert answer_kind(blocked) == lookup.REFUSED  # only Prohibited is the policy's word
    assert answer_kind(_reply(dns.rcode.NXDOMAIN)) == lookup.NO_SUCH_NAME
    assert answer_kind(_reply(dns.rcode.SERVFAIL)) == lookup.OTHER
    assert answer_kind(_reply(dns.rcode.NOERROR, edns=False)) == lookup.OTHER


def test_only_a_definite_answer_makes_a_failed_lookup_a_denial():
    again, text = socket.EAI_AGAIN, "Temporary failure in name resolution"
    host = "files.pythonhosted.org"
    by_policy = lookup_failure(host, again, text, lookup.REFUSED_BY_POLICY)
    assert by_policy.denied and by_policy.by_policy
    assert "network policy leaves it out" in by_policy.reason
    for answer in (lookup.REFUSED, lookup.NO_RESOLVER, lookup.NO_SUCH_NAME):
        failure = lookup_failure(host, again, text, answer)
        assert failure.denied and not failure.by_policy, answer
    unknown = lookup_failure(host, socket.EAI_NONAME, "Name or service not known", None)
    assert unknown.denied and "no such name" in unknown.reason
    # SERVFAIL, a timeout, an address: the lookup may work next time
    for answer in (lookup.OTHER, None):
        failure = lookup_failure(host, again, text, answer)
        assert not failure.denied, answer
        assert failure.reason == f"looking {host} up failed temporarily ({text})"
    assert not lookup_failure(host, socket.EAI_FAIL, "Non-recoverable failure", None).denied


def test_the_messages_name_the_host_and_what_to_allow():
    failure = Failure(True, "files.pythonhosted.org does not resolve here (…)", True)
    said = files_out_of_reach("pypi.org", "files.pythonhosted.org", failure)
    assert 'Add "files.pythonhosted.org" to this context\'s allowlist' in said
    assert "where pypi.org serves the package files" in said
    assert "only wheels already in the shared cache" in said
    # the allowlist's advice is what fixes it; and it is one the API accepts
    assert parse({"allow": ["pypi.org", "files.pythonhosted.org"]}).allows_name(
        "files.pythonhosted.org"
    )
    refused = Failure(True, "connections to files.pythonhosted.org port 443 fail (…)")
    assert "allowlist" not in files_out_of_reach("pypi.org", "files.pythonhosted.org", refused)
    assert index_out_of_reach("x").startswith("no network access to the package index: x.")
    doubt = temporary("looking pypi.org up failed temporarily (Temporary failure …)")
    assert "not a denial by this context's network policy" in doubt
    assert "uv tried as usual" in doubt


def test_nameserver_is_the_first_of_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver 127.0.0.53\nnameserver ::1\n")
    assert lookup.first_nameserver(str(conf)) == "127.0.0.53"
    conf.write_text("search example\n")
    assert lookup.first_nameserver(str(conf)) is None
    assert lookup.first_nameserver(str(tmp_path / "missing")) is None
