"""Can this context reach the package index, and where it serves its files? Asked inside the
sandbox before an install.

A context whose network policy leaves the index out (``off``, or an allowlist without the
registry's names), or only the host of its files (an allowlist with ``pypi.org`` but not
``files.pythonhosted.org``), would otherwise let uv retry for seconds before it gives up.
Denied connections fail at once by design (refused, unreachable, or a name the context's
DNS refuses), so one lookup and one connect per host tell it: uv then runs ``--offline``
(the wheel cache still works) and the failure says which host to allow. A slow answer or a
lookup that failed for now (:mod:`cellbox.packages.lookup`) is never taken for a denial:
uv tries as usual, and a failure then says the lookup failed temporarily.
"""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from cellbox.packages.lookup import Failure, read_or_empty, resolve

DEFAULT_INDEX = "https://pypi.org/simple"
CONNECT_TIMEOUT_S = 2.0
_INDEX_OPTIONS = ("--index-url", "--default-index", "-i")
# PyPI's indexes and the one host each serves its files from (the URLs its pages link to)
FILE_HOSTS = {"pypi.org": "files.pythonhosted.org", "test.pypi.org": "test-files.pythonhosted.org"}


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


def network_reachable() -> bool:
    return has_default_route(
        read_or_empty("/proc/net/route"), read_or_empty("/proc/net/ipv6_route")
    )


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


def files_url(index: str) -> str | None:
    """Where the index at ``index`` serves its files, when that is known without asking it.

    PyPI's indexes serve every file from one host of their own; any other index (a mirror,
    a private index, a proxy of PyPI) may serve its files from itself, a CDN or anywhere,
    and only its answer says where: those downloads are left to uv.
    """
    files = FILE_HOSTS.get(urllib.parse.urlsplit(index).hostname or "")
    return f"https://{files}/" if files else None


@dataclass(frozen=True)
class Reach:
    """What the check before an install found; both are said only if the install fails."""

    cut_off: str | None = None  # certainly out of reach: uv runs ``--offline``
    doubt: str | None = None  # a lookup failed for now: uv tries the network as usual


def check(url: str) -> Reach:
    """Can an install from the index at ``url`` reach it, and the host of its files?"""
    if not network_reachable():
        return Reach(cut_off=index_out_of_reach("this context has no network"))
    proxies = urllib.request.getproxies()
    index = endpoint(url, proxies)
    if index is None:
        return Reach()
    failure = probe(*index)
    if failure is not None:
        return _found(failure, index_out_of_reach(failure.reason))
    files = files_url(url)
    target = endpoint(files, proxies) if files else None
    if files is None or target is None or target == index:  # the same host or proxy: done
        return Reach()
    failure = probe(*target)
    if failure is None:
        return Reach()
    index_host = urllib.parse.urlsplit(url).hostname or url
    files_host = urllib.parse.urlsplit(files).hostname or files
    return _found(failure, files_out_of_reach(index_host, files_host, failure))


def _found(failure: Failure, cut_off: str) -> Reach:
    """A denial cuts the install off (``cut_off`` says why); anything else is a doubt."""
    return Reach(cut_off=cut_off) if failure.denied else Reach(doubt=temporary(failure.reason))


def probe(host: str, port: int) -> Failure | None:
    """Why ``host`` is out of reach on ``port`` (one lookup, one connect), or None."""
    found = resolve(host, port)
    if isinstance(found, Failure):
        return found
    failure: OSError | None = None
    for family, kind, proto, _, address in found[:4]:
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
    return Failure(True, f"connections to {host} port {port} fail ({reason})")


def index_out_of_reach(reason: str) -> str:
    return (
        f"no network access to the package index: {reason}. This context's network policy "
        "does not reach it, so only wheels already in the shared cache can be installed"
    )


def files_out_of_reach(index_host: str, files_host: str, failure: Failure) -> str:
    advice = (
        f'Add "{files_host}" to this context\'s allowlist, next to "{index_host}"; until then'
        if failure.by_policy
        else "This context's network policy does not reach it, so"
    )
    return (
        f"no network access to {files_host}, where {index_host} serves the package files: "
        f"{failure.reason}. {advice} only wheels already in the shared cache can be installed"
    )


def temporary(reason: str) -> str:
    return (
        f"{reason}: a DNS failure that may pass, not a denial by this context's network "
        "policy, so uv tried as usual; try again later"
    )
