"""Can this context reach the package index at all? Asked inside the sandbox before an install.

A context whose network policy leaves the index out (``off``, or an allowlist without the
registry's names) would otherwise let uv retry for seconds before it gives up. Denied
connections fail at once by design (refused, unreachable, or a name the context's DNS does
not answer), so one lookup and one connect tell it: uv then runs ``--offline`` (the wheel
cache still works) and the failure says why. A slow answer is never taken for a denial.
"""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request
from collections.abc import Mapping

DEFAULT_INDEX = "https://pypi.org/simple"
CONNECT_TIMEOUT_S = 2.0
_INDEX_OPTIONS = ("--index-url", "--default-index", "-i")


def has_default_route(route: str, ipv6_route: str) -> bool:
    """Is there a way out of this network namespace (``/proc/net/route``, ``ipv6_route``)?"""
    for line in route.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000" and fields[0] != "lo":
            return True
    for line in ipv6_route.splitlines():
        fields = line.split()
        if len(fields) == 10 and fields[0] == "0" * 32 and fields[1] == "00" and fields[9] != "lo":
            return True
    return False


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def network_reachable() -> bool:
    return has_default_route(_read("/proc/net/route"), _read("/proc/net/ipv6_route"))


def index_url(uv_args: list[str]) -> str:
    """The index uv will ask first, from its command line (the last one given wins)."""
    url = DEFAULT_INDEX
    for i, arg in enumerate(uv_args):
        name, _, value = arg.partition("=")
        if name in _INDEX_OPTIONS:
            url = value if value else (uv_args[i + 1] if i + 1 < len(uv_args) else url)
    return url


def endpoint(url: str, proxies: Mapping[str, str]) -> tuple[str, int] | None:
    """Host and port a request for ``url`` connects to (its proxy's, if one is set)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # a local index: nothing to reach
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if not parts.hostname:
            return None
    default_port = 443 if parts.scheme == "https" else 80
    return parts.hostname, parts.port or default_port


def unreachable(url: str) -> str | None:
    """Why the index at ``url`` is certainly out of reach from here, or None."""
    if not network_reachable():
        return "this context has no network"
    target = endpoint(url, urllib.request.getproxies())
    if target is None:
        return None
    host, port = target
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"{host} does not resolve here ({exc.strerror})"
    failure: OSError | None = None
    for family, kind, proto, _, address in addresses[:4]:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(CONNECT_TIMEOUT_S)
                sock.connect(address)
            return None
        except TimeoutError:
            return None  # slow, not denied: uv decides
        except OSError as exc:
            failure = exc
    reason = failure.strerror if failure is not None and failure.strerror else failure
    return f"connections to {host} port {port} fail ({reason})"
