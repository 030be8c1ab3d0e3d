"""7. The network: `public` by default (internet, never the host or internal ranges), `off`,
allowlists per context, `host` only when asked and then loudly.

Traffic goes only to listeners of this test on the host's loopback and own address and to
the package registries. Denials of every other range (cloud metadata included) are checked
in the rules installed in a context's namespace, never by sending packets there.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import Client, Server
from tests.security.conftest import (
    SMALL_LIMITS,
    Contexts,
    HostServer,
    Listener,
    isolation,
    py_value,
    status,
    ts_json,
    wait_until,
    worker_host_pid,
)

LANGUAGES = ["python", "typescript"]
FAST_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH}
FAST_CODES = {"ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH"}
REGISTRY = ["pypi.org", "files.pythonhosted.org"]
NS_GET_USERNS = 0xB701
CHEAP = {**SMALL_LIMITS, "pool_python": 1, "pool_typescript": 0}

PY_CONNECT = """
import socket
outcome = {{}}
for host in {hosts!r}:
    try:
        with socket.create_connection((host, {port}), timeout=1) as sock:
            outcome[host] = 'connected: ' + sock.recv(100).decode()
    except OSError as exc:
        outcome[host] = exc.errno or str(exc)  # a timeout has no errno: not fast
outcome['interfaces'] = sorted(name for _, name in socket.if_nameindex())
outcome
"""

TS_CONNECT = """
const net = require('node:net');
const os = require('node:os');
const outcome = {{}};
for (const host of {hosts!r}) {{
  outcome[host] = await new Promise((resolve) => {{
    const sock = net.connect({{ host, port: {port}, timeout: 1000 }});
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

PY_DNS_AND_PIP = """
import socket, subprocess, sys
try:
    resolved = sorted({{a[4][0] for a in socket.getaddrinfo('pypi.org', 443)}})
except OSError as exc:
    resolved = 'error: ' + str(exc)
pip = subprocess.run(
    [sys.executable, '-m', 'pip', 'install', '--no-cache-dir', '--disable-pip-version-check',
     '--retries', '0', '--timeout', '15', '--no-deps', '--target', 'pkgs-{tag}', 'six'],
    capture_output=True, text=True, timeout=50,
)
{{'resolved': resolved, 'pip': pip.returncode, 'output': (pip.stdout + pip.stderr)[-1500:]}}
"""

CONNECTED = "connected: " + Listener.GREETING.decode()


def host_address() -> str:
    """This machine's own (global) IPv4 address, read now: the test may not guess it."""
    out = subprocess.run(["ip", "-j", "-4", "address", "show"], capture_output=True, check=True)
    for link in json.loads(out.stdout):
        for info in link.get("addr_info", []):
            if info.get("scope") == "global":
                return info["local"]
    pytest.fail("this host has no global IPv4 address to test with")


@pytest.fixture
def wide_listener() -> Iterator[Listener]:
    """One listener on every address: loopback and the host's own interfaces."""
    made = Listener(host="0.0.0.0")
    yield made
    made.close()


def _new(client: Client, language: str, network: object = None) -> dict:
    body = {"language": language} if network is None else {"language": language, "network": network}
    response = client.post("/contexts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _connect(client: Client, language: str, hosts: list[str], port: int, **kw) -> dict:
    made = Contexts(client)
    try:
        context = _new(client, language, **kw)
        made.ids.append(context["id"])
        if language == "python":
            return py_value(
                client, PY_CONNECT.format(hosts=hosts, port=port), context_id=context["id"]
            )
        code = TS_CONNECT.format(hosts=hosts, port=port)
        return ts_json(client, code, context_id=context["id"])
    finally:
        made.close()


def _denied_fast(result: object) -> bool:
    return result in FAST_ERRNOS or result in FAST_CODES


def _covered(rule: str, network: str) -> bool:
    """Is ``network`` inside one element of the rule's address set (nft merges neighbours)?"""
    elements = rule.split("{", 1)[1].split("}", 1)[0].split(",")
    wanted = ipaddress.ip_network(network)
    return any(
        wanted.subnet_of(ipaddress.ip_network(e.strip()))
        for e in elements
        if ipaddress.ip_network(e.strip()).version == wanted.version
    )


def _ruleset(pid: int) -> str:
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "list", "table", "inet", "cellbox"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


# --------------------------------------------------------------------------- public


@pytest.mark.parametrize("language", LANGUAGES)
def test_public_reaches_neither_the_host_loopback_nor_its_address(
    limited: Server, wide_listener: Listener, language: str
):
    hosts = ["127.0.0.1", host_address()]
    with limited.client() as client:
        outcome = _connect(client, language, hosts, wide_listener.port)
    for host in hosts:
        assert _denied_fast(outcome[host]), (host, outcome)  # refused at once, no time-out
    assert wide_listener.accepted == 0
    assert outcome["interfaces"] == ["lo", "tap0"], outcome


def test_allowlist_naming_the_host_address_reaches_it_but_never_host_loopback(
    limited: Server, wide_listener: Listener
):
    host = host_address()
    allow = {"allow": [f"{host}/32", "127.0.0.0/8"]}
    with limited.client() as client:
        outcome = _connect(client, "python", ["127.0.0.1", host], wide_listener.port, network=allow)
    assert outcome[host] == CONNECTED, outcome
    assert _denied_fast(outcome["127.0.0.1"]), outcome  # the context's own loopback
    assert wide_listener.accepted == 1


@pytest.mark.slow
def test_dns_and_pip_follow_the_policy(limited: Server):
    """pip works in public and with the registry allowed; fails fast otherwise."""
    cases = {
        "public": "public",
        "registry": {"allow": REGISTRY},
        "elsewhere": {"allow": ["*.example.org", "198.51.100.0/24"]},
        "off": "off",
    }
    results = {}
    with limited.client() as client:
        made = Contexts(client)
        try:
            for tag, network in cases.items():
                context = _new(client, "python", network)
                made.ids.append(context["id"])
                assert context["network"] == network
                code = PY_DNS_AND_PIP.format(tag=tag)
                results[tag] = py_value(client, code, context_id=context["id"], timeout_ms=55000)
        finally:
            made.close()
    for tag in ("public", "registry"):
        assert results[tag]["pip"] == 0, (tag, results[tag])
        assert isinstance(results[tag]["resolved"], list) and results[tag]["resolved"], results
    for tag in ("elsewhere", "off"):
        assert results[tag]["pip"] != 0, (tag, results[tag])
        assert str(results[tag]["resolved"]).startswith("error"), (tag, results[tag])
        assert "timed out" not in results[tag]["output"].lower(), (tag, results[tag])


# --------------------------------------------------------------------------- enforcement


def test_rules_are_installed_in_every_context_namespace(limited: Server):
    """The same rules for zygote children (Python) and spawned workers (TypeScript)."""
    host = host_address()
    with limited.client() as client:
        made = Contexts(client)
        try:
            rules = {}
            for language in LANGUAGES:
                made.ids.append(_new(client, language)["id"])
                rules[language] = _ruleset(worker_host_pid(client, made.ids[-1]))
            made.ids.append(_new(client, "python", {"allow": ["192.0.2.0/24", "pypi.org"]})["id"])
            allow = _ruleset(worker_host_pid(client, made.ids[-1]))
            made.ids.append(_new(client, "python", "off")["id"])
            off = _ruleset(worker_host_pid(client, made.ids[-1]))
        finally:
            made.close()
    assert rules["python"] == rules["typescript"]
    public = rules["python"]
    assert "policy drop;" in public
    v4 = next(line for line in public.splitlines() if "ip daddr" in line)
    v6 = next(line for line in public.splitlines() if "ip6 daddr" in line)
    assert "goto deny" in v4 and "goto deny" in v6
    for denied in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert _covered(v4, denied), denied
    for denied in ("100.64.0.0/10", "127.0.0.0/8", "224.0.0.0/4", f"{host}/32"):
        assert _covered(v4, denied), denied
    for denied in ("fe80::/10", "fc00::/7", "ff00::/8"):
        assert _covered(v6, denied), denied
    assert "reject with tcp reset" in public
    for script in (allow, off):
        assert "\t\taccept\n" not in script  # no accept-all
    assert "192.0.2.0/24" in allow and "ip daddr @allowed4 accept" in allow
    assert "@allowed4" not in off


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_policy_cannot_be_changed_from_inside(limited: Server, language: str):
    nft, ip = shutil.which("nft"), shutil.which("ip")
    assert nft and ip
    code = {
        "python": (
            "import subprocess\n"
            "[subprocess.run(c, capture_output=True).returncode for c in "
            f"([{nft!r}, 'flush', 'ruleset'], [{ip!r}, 'link', 'set', 'tap0', 'down'], "
            f"[{ip!r}, 'route', 'del', 'default'])]"
        ),
        "typescript": (
            "const { spawnSync } = require('node:child_process');\n"
            f"return [spawnSync({nft!r}, ['flush', 'ruleset']).status, "
            f"spawnSync({ip!r}, ['link', 'set', 'tap0', 'down']).status];"
        ),
    }[language]
    with limited.client() as client:
        made = Contexts(client)
        try:
            context_id = _new(client, language)["id"]
            made.ids.append(context_id)
            pid = worker_host_pid(client, context_id)
            before = _ruleset(pid)
            if language == "python":
                codes = py_value(client, code, context_id=context_id)
            else:
                codes = ts_json(client, code, context_id=context_id)
            assert all(c != 0 for c in codes), codes
            assert _ruleset(pid) == before
            fields = status(pid)
            assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
            if language == "typescript":
                # spawned: the namespace was made by root, owned by the initial user namespace
                owner = _namespace_owner(pid)
                assert owner == os.stat("/proc/self/ns/user").st_ino  # the server's and ours
        finally:
            made.close()


def _namespace_owner(pid: int) -> int:
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        user_ns = fcntl.ioctl(fd, NS_GET_USERNS)
        try:
            return os.fstat(user_ns).st_ino
        finally:
            os.close(user_ns)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the API


def test_network_values_are_checked_and_reported(limited: Server, offline: Server):
    with limited.client() as client:
        for bad in ("bogus", "host", {"allow": "pypi.org"}, {"allow": ["a b"]}, {"deny": []}):
            response = client.post("/contexts", json={"network": bad})
            assert response.status_code == 400, (bad, response.text)
            assert [e["field"] for e in response.json()["errors"]] == ["network"]
        info = client.get("/info").json()
        assert info["network"]["mode"] == "public"
        assert info["network"]["mechanism"] == "slirp4netns+nftables"
        assert info["network"]["warnings"] == []
        made = Contexts(client)
        try:
            context = _new(client, "python", {"allow": ["*.Example.org", "198.51.100.1"]})
            made.ids.append(context["id"])
            expected = {"allow": ["*.example.org", "198.51.100.1/32"]}
            assert context["network"] == expected
            assert client.get(f"/contexts/{context['id']}").json()["network"] == expected
            made.ids.append(_new(client, "typescript")["id"])
            assert client.get(f"/contexts/{made.ids[-1]}").json()["network"] == "public"
        finally:
            made.close()
    with offline.client() as client:
        assert client.get("/info").json()["network"]["mode"] == "off"
        response = client.post("/contexts", json={"network": "public"})
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["field"] == "network"
        made = Contexts(client)
        try:
            assert _new(client, "python", "off")["network"] == "off"
        finally:
            made.close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_network_off_blocks_egress(offline: Server, wide_listener: Listener, language: str):
    assert isolation(offline)["network"] == "off"
    hosts = sorted({"127.0.0.1", host_address()})
    with offline.client() as client:
        outcome = _connect(client, language, hosts, wide_listener.port)
    for host in hosts:
        assert not str(outcome[host]).startswith("connected"), (host, outcome)
    assert wide_listener.accepted == 0
    assert outcome["interfaces"] == ["lo"], outcome  # nothing but its own loopback


def test_a_host_without_the_mechanism_falls_back_to_off(wide_listener: Listener):
    """/dev/net is hidden from the server: public cannot be had, and off it is, loudly."""
    server = HostServer("mount -t tmpfs tmpfs /dev/net", **CHEAP).start()
    try:
        with server.client() as client:
            network = client.get("/info").json()["network"]
            assert network["mode"] == "off" and network["requested"] == "public", network
            assert any("not available" in w for w in network["warnings"]), network
            assert "CELLBOX NETWORK: off" in server.read_log()
            outcome = _connect(client, "python", ["127.0.0.1", host_address()], wide_listener.port)
        assert outcome["interfaces"] == ["lo"], outcome
        assert wide_listener.accepted == 0
    finally:
        server.stop()
        server.cleanup()


# --------------------------------------------------------------------------- cleanup


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _footprint(server: Server) -> dict:
    """What the server holds of networking: processes, namespaces, fds; the host's own state."""
    assert server.process is not None
    pids = _descendants(server.process.pid)
    namespaces = set()
    slirps = 0
    for pid in pids:
        try:
            namespaces.add(os.readlink(f"/proc/{pid}/ns/net"))
            slirps += b"slirp4netns" in open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
    fd_dir = f"/proc/{server.process.pid}/fd"
    held = []
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("net:["):
            held.append(target)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    return {
        "processes": len(pids),
        "namespaces": len(namespaces),
        "slirp4netns": slirps,
        "namespace fds": len(held),
        "host links": sorted(line.split(":")[1].strip() for line in links.splitlines()),
        "host rules": rules,
    }


@pytest.mark.slow
def test_fifty_contexts_leave_nothing_behind(limited: Server):
    with limited.client() as client:
        before = wait_until(lambda: _settled(limited), timeout=30)
        assert before, "the pools did not settle"
        for i in range(50):
            language = "typescript" if i % 4 == 3 else "python"
            context = _new(client, language)
            assert context["network"] == "public"
            response = client.delete(f"/contexts/{context['id']}")
            assert response.status_code == 204
        after = wait_until(lambda: _settled(limited) == before and before, timeout=30)
        assert after == before, (_settled(limited), before)


def _settled(server: Server) -> dict | None:
    """The footprint once the warm pools are full (one namespace and link per warm worker)."""
    first = _footprint(server)
    second = _footprint(server)
    if first != second or first["slirp4netns"] != 2:  # pool_python 1 + pool_typescript 1
        return None
    return first
