"""The server's network setting: ``off``, ``public`` or ``host``, and the tools behind it.

``--network public`` gives every worker a network namespace of its own (made by root in the
spawn chain, so its owner is the initial user namespace; a zygote child makes its own as
it confines itself); :meth:`Network.attach` brings its ``lo`` up and hands it to a
:class:`cellbox.sandbox.link.Link` (nftables rules, slirp4netns, DNS forwarder), from
outside and before any user code runs.

Warm workers are attached with the server's default policy (``public``); a context that
asks for another one gets it at hand-out (one atomic ``nft -f``, about 6 ms). A host
without the tools falls back to ``off`` and says so; ``host`` is only ever what was asked.

Under ``--network host`` a context may still ask for less (``off``, ``public``, an
allowlist): its worker is then spawned with a namespace of its own and attached exactly as
under ``public``. The tools are checked (with a trial namespace) only when the first such
context comes, so a host server that never sees one pays nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from typing import Any

from cellbox.placement import placement
from cellbox.sandbox import dns
from cellbox.sandbox.link import Link, NetworkError, in_namespace, is_own_namespace
from cellbox.sandbox.netpolicy import DNS_ADDRESS, HOST, OFF, PUBLIC, Policy, within
from cellbox.workers.zygote.confine import bring_up_loopback

log = logging.getLogger("cellbox.network")

MECHANISM = "slirp4netns+nftables"
HOST_WARNING = (
    "--network host: contexts share the host's network and can reach every service on its "
    "loopback and private networks (cloud metadata included); use --network public"
)
_TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


class _HostAddresses:
    """The host's own addresses (denied to ``public``), re-read at most every few seconds."""

    def __init__(self, ip_tool: str | None) -> None:
        self._ip = ip_tool
        self._read_at = -1e9
        self._addresses: list[str] = []

    def get(self) -> list[str]:
        if self._ip is not None and time.monotonic() - self._read_at > 5.0:
            out = subprocess.run(
                [self._ip, "-j", "address", "show"], capture_output=True, timeout=10
            )
            if out.returncode == 0:
                self._addresses = [
                    info["local"].split("%")[0]
                    for link in json.loads(out.stdout)
                    for info in link.get("addr_info", [])
                    if "local" in info
                ]
                self._read_at = time.monotonic()
        return list(self._addresses)


class Network:
    """The server-wide mode (``off``, ``public``, ``host``) and the tools that enforce it."""

    def __init__(self, requested: str, *, privileged: bool) -> None:
        self.requested = requested
        self.mode = requested
        self.warnings: list[str] = []
        self._privileged = privileged
        self._tools: dict[str, str] = {}
        self._host = _HostAddresses(shutil.which("ip", path=_TOOL_PATH))
        self.nameservers = dns.host_nameservers()
        # Under host: None until the first context asks for a policy, then "" (the tools
        # work) or why they do not.
        self._own_namespaces: str | None = None
        self._checking = asyncio.Lock()
        if requested == HOST:
            self.warnings.append(HOST_WARNING)
        elif requested == PUBLIC:
            problem = self._probe(privileged)
            if problem is not None:
                self.mode = OFF
                self.warnings.append(
                    f"--network public is not available on this host ({problem}); "
                    "contexts run with the network OFF"
                )

    def settle(self, enforced: str) -> None:
        """Take the mode the sandbox could enforce (no namespaces: host) and say it loudly."""
        if enforced != self.mode:
            self.warnings.append(
                f"the sandbox cannot give contexts a network namespace here: they share the "
                f"host's network (asked for --network {self.requested})"
            )
            self.mode = enforced
        if self.warnings:
            banner = "!" * 78
            text = "\n".join(f"  - {w}" for w in self.warnings)
            log.warning("\n%s\nCELLBOX NETWORK: %s\n%s\n%s", banner, self.mode, text, banner)

    def default(self) -> Policy:
        """The policy of a context that asks for none: the server's mode."""
        return Policy(self.mode)

    async def admit(self, policy: Policy) -> None:
        """``PolicyError`` unless this server can give a context ``policy``.

        Under ``host`` the first policy other than ``host`` checks the tools, once.
        """
        unavailable = None
        if self.mode == HOST and policy.kind != HOST:
            async with self._checking:
                if self._own_namespaces is None:
                    problem = await asyncio.to_thread(self._probe, self._privileged)
                    self._own_namespaces = problem or ""
                    if problem:
                        log.warning("contexts cannot have a network of their own: %s", problem)
            unavailable = self._own_namespaces or None
        within(policy, self.mode, unavailable)

    def own_namespace(self, policy: Policy) -> bool:
        """Does a worker for ``policy`` get a namespace that the server attaches to?"""
        return self.mode == PUBLIC or self.departs(policy)

    def departs(self, policy: Policy) -> bool:
        """Does a worker for ``policy`` need other namespaces than the server gives every
        worker (a context with a policy on a ``host`` server: spawned, never warm)?"""
        return self.mode == HOST and policy.kind != HOST

    @property
    def mechanism(self) -> str:
        return {PUBLIC: MECHANISM, OFF: "empty network namespace", HOST: "none"}[self.mode]

    def describe(self) -> dict[str, Any]:
        """What ``GET /info`` says about the network."""
        info: dict[str, Any] = {
            "mode": self.mode,
            "requested": self.requested,
            "mechanism": self.mechanism,
            "dns": f"forwarder at {DNS_ADDRESS}" if self.mode == PUBLIC else None,
            "warnings": list(self.warnings),
        }
        if self.mode == HOST:
            info["context_policies"] = self._context_policies()
        return info

    def _context_policies(self) -> dict[str, Any]:
        """Under ``host``: whether contexts that ask for ``off``, ``public`` or an allowlist
        can get it, by what, and whether that was set up yet."""
        if self._own_namespaces is None:
            state, reason = "not checked yet (on the first context that asks for one)", None
        elif self._own_namespaces:
            state, reason = "unavailable", self._own_namespaces
        else:
            state, reason = "available", None
        return {
            "mechanism": f"{MECHANISM}, DNS forwarder at {DNS_ADDRESS}",
            "state": state,
            "reason": reason,
        }

    def _probe(self, privileged: bool) -> str | None:
        """Why ``public`` cannot work here, or None once a trial namespace was attached."""
        if not privileged:
            return "the server must run as root with the sandbox on"
        for name in ("slirp4netns", "nft", "nsenter", "unshare"):
            path = shutil.which(name, path=_TOOL_PATH)
            if path is None:
                return f"{name} not found"
            self._tools[name] = path
        if not os.path.exists("/dev/net/tun"):
            return "/dev/net/tun is missing"
        if not self.nameservers:
            return "no resolver in /etc/resolv.conf"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._trial()).result()

    async def _trial(self) -> str | None:
        try:
            holder = await placement.spawn(
                self._tools["unshare"], "--net", "--", "sleep", "60", start_new_session=True
            )
        except OSError as exc:
            return str(exc)
        try:
            for _ in range(200):  # until unshare has switched (bounded: 2 s)
                with contextlib.suppress(OSError):
                    fd = os.open(f"/proc/{holder.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        if not is_own_namespace(fd):
                            break
                    finally:
                        os.close(fd)
                await asyncio.sleep(0.01)
            link = await self.attach(holder.pid, Policy(PUBLIC))
            await link.close()
            return None
        except NetworkError as exc:
            return str(exc)
        finally:
            holder.kill()
            await holder.wait()

    async def attach(self, pid: int, policy: Policy) -> Link:
        """Set up the namespace of process ``pid`` for ``policy``; the ``Link`` owns it."""
        try:
            ns_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NetworkError(f"the worker's network namespace is gone: {exc}") from exc
        if is_own_namespace(ns_fd):
            os.close(ns_fd)  # never put rules or links into the host's own namespace
            raise NetworkError(f"process {pid} is in the server's network namespace")
        link = Link(self, ns_fd)
        try:
            await asyncio.to_thread(in_namespace, ns_fd, bring_up_loopback)
            await link.apply(policy)
        except OSError as exc:  # bringing up lo
            await link.close()
            raise NetworkError(str(exc)) from exc
        except BaseException:
            await link.close()
            raise
        return link

    def host_addresses(self) -> list[str]:
        return self._host.get()

    def tool(self, name: str) -> str:
        return self._tools[name]
