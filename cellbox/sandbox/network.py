"""The server's network setting and each context's link: slirp4netns, nftables, DNS.

``--network public`` gives every worker a network namespace of its own (made by root in the
spawn chain, so its owner is the initial user namespace; a zygote child makes its own as
it confines itself) and attaches to it, from outside and before any user code runs:

- ``lo`` up, and an nftables table from :mod:`cellbox.sandbox.netpolicy` (default drop);
- ``slirp4netns`` for outbound traffic: a user-mode TCP/IP stack on the host's side, with
  the host's loopback switched off, its own DNS off, run sandboxed (no capabilities but
  binding low ports, seccomp); it exits when the server's end of its exit pipe closes;
- a DNS forwarder (:mod:`cellbox.sandbox.dns`) on ``127.0.0.53:53`` of the namespace.

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
import ctypes
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cellbox.sandbox import dns
from cellbox.sandbox.netpolicy import DNS_ADDRESS, HOST, OFF, PUBLIC, Policy, within
from cellbox.sandbox.netpolicy import allow_addresses as allow_script
from cellbox.sandbox.netpolicy import ruleset as rules_script
from cellbox.workers.zygote.confine import bring_up_loopback

log = logging.getLogger("cellbox.network")

MECHANISM = "slirp4netns+nftables"
TAP = "tap0"
READY_TIMEOUT_S = 10.0
HOST_WARNING = (
    "--network host: contexts share the host's network and can reach every service on its "
    "loopback and private networks (cloud metadata included); use --network public"
)
_TOOL_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_T = TypeVar("_T")


class NetworkError(RuntimeError):
    """A context's network could not be set up."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _within(ns_fd: int, action: Callable[[], _T]) -> _T:
    """Run ``action`` in this thread switched into the namespace ``ns_fd``, then switch back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(ns_fd)
        try:
            return action()
        finally:
            _setns(own)  # root can always go back; a thread left behind would be a bug
    finally:
        os.close(own)


def _same_namespace(ns_fd: int) -> bool:
    """Is ``ns_fd`` the network namespace this thread is in?"""
    own = os.stat("/proc/thread-self/ns/net")
    theirs = os.fstat(ns_fd)
    return (own.st_dev, own.st_ino) == (theirs.st_dev, theirs.st_ino)


def _dns_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((DNS_ADDRESS, 53))
    except OSError:
        sock.close()
        raise
    return sock


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
            holder = await asyncio.create_subprocess_exec(
                self._tools["unshare"], "--net", "--", "sleep", "60", start_new_session=True
            )
        except OSError as exc:
            return str(exc)
        try:
            for _ in range(200):  # until unshare has switched (bounded: 2 s)
                with contextlib.suppress(OSError):
                    fd = os.open(f"/proc/{holder.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        if not _same_namespace(fd):
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
        if _same_namespace(ns_fd):
            os.close(ns_fd)  # never put rules or links into the host's own namespace
            raise NetworkError(f"process {pid} is in the server's network namespace")
        link = Link(self, ns_fd)
        try:
            await asyncio.to_thread(_within, ns_fd, bring_up_loopback)
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


class Link:
    """One worker's network namespace as the server holds it: rules, slirp4netns, DNS."""

    def __init__(self, network: Network, ns_fd: int) -> None:
        self.policy: Policy | None = None
        self._network = network
        self._ns_fd = ns_fd
        self._slirp: asyncio.subprocess.Process | None = None
        self._slirp_exit: int | None = None  # our end of slirp4netns's exit pipe
        self._dns: dns.Forwarder | None = None

    async def apply(self, policy: Policy) -> None:
        """Make the namespace obey ``policy`` (rules first, then what it needs)."""
        if policy == self.policy:
            return
        try:
            await self._apply(policy)
        except OSError as exc:
            raise NetworkError(str(exc)) from exc

    async def _apply(self, policy: Policy) -> None:
        hosts = await asyncio.to_thread(self._network.host_addresses)
        await self._nft(rules_script(policy, hosts))
        if policy.kind == OFF:
            await self._stop_slirp()
        elif self._slirp is None:
            await self._start_slirp()
        if not policy.has_dns:
            self._stop_dns()
        elif self._dns is None:
            forwarder = dns.Forwarder(policy, self._network.nameservers, self.allow)
            sock = await asyncio.to_thread(_within, self._ns_fd, _dns_socket)
            if self._ns_fd < 0:  # closed meanwhile
                sock.close()
                raise NetworkError("the context's network is closed")
            self._dns = forwarder
            await dns.serve(sock, forwarder)
        else:
            self._dns.policy = policy
        self.policy = policy

    async def allow(self, addresses: list[str]) -> None:
        """Let connections to ``addresses`` through (resolved names of the allowlist)."""
        await self._nft(allow_script(addresses))

    async def close(self) -> None:
        """Stop everything of this namespace; it goes away with its last process."""
        self._stop_dns()
        await self._stop_slirp()
        if self._ns_fd >= 0:
            os.close(self._ns_fd)
            self._ns_fd = -1

    async def _nft(self, script: str) -> None:
        if self._ns_fd < 0:
            raise NetworkError("the context's network is closed")
        ns = f"/proc/self/fd/{self._ns_fd}"
        process = await asyncio.create_subprocess_exec(
            self._network.tool("nsenter"),
            f"--net={ns}",
            self._network.tool("nft"),
            "-f",
            "-",
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(self._ns_fd,),
        )
        _, err = await process.communicate(script.encode())
        if process.returncode != 0:
            raise NetworkError(f"nft failed: {err.decode(errors='replace').strip()}")

    async def _start_slirp(self) -> None:
        if self._ns_fd < 0:
            raise NetworkError("the context's network is closed")
        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        exit_read, self._slirp_exit = os.pipe2(os.O_CLOEXEC)
        try:
            self._slirp = await asyncio.create_subprocess_exec(
                self._network.tool("slirp4netns"),
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--disable-dns",
                "--enable-sandbox",
                "--enable-seccomp",
                f"--exit-fd={exit_read}",
                f"--ready-fd={ready_write}",
                "--netns-type=path",
                f"/proc/self/fd/{self._ns_fd}",
                TAP,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(self._ns_fd, exit_read, ready_write),
                start_new_session=True,
            )
        finally:
            os.close(exit_read)
            os.close(ready_write)
        try:
            ready = await asyncio.wait_for(_read_once(ready_read), READY_TIMEOUT_S)
        except TimeoutError:
            ready = b""
        finally:
            os.close(ready_read)
        if not ready:
            code = self._slirp.returncode
            await self._stop_slirp()
            raise NetworkError(f"slirp4netns did not come up (exit status {code})")

    async def _stop_slirp(self) -> None:
        if self._slirp_exit is not None:
            os.close(self._slirp_exit)
            self._slirp_exit = None
        if self._slirp is not None:
            with contextlib.suppress(ProcessLookupError):
                self._slirp.kill()
            await self._slirp.wait()
            self._slirp = None

    def _stop_dns(self) -> None:
        if self._dns is not None:
            self._dns.close()
            self._dns = None


async def _read_once(fd: int) -> bytes:
    """One read of a pipe, without blocking the loop (b"" when the writer closed)."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 16)
