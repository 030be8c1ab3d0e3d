"""One worker's network namespace as the server holds it: nftables rules, slirp4netns, DNS.

A ``Link`` is made by :meth:`cellbox.sandbox.network.Network.attach` from outside the
namespace, before any user code runs, and keeps it obeying one policy at a time:

- an nftables table from :mod:`cellbox.sandbox.netpolicy` (default drop), changed by one
  atomic ``nft -f`` when the policy changes;
- ``slirp4netns`` for outbound traffic: a user-mode TCP/IP stack on the host's side, with
  the host's loopback switched off, its own DNS off, run sandboxed (no capabilities but
  binding low ports, seccomp); it exits when the server's end of its exit pipe closes;
- a DNS forwarder (:mod:`cellbox.sandbox.dns`) on ``127.0.0.53:53`` of the namespace (UDP
  and TCP).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from cellbox.placement import placement
from cellbox.process.child import Child
from cellbox.sandbox import dns
from cellbox.sandbox.netpolicy import DNS_ADDRESS, OFF, Policy
from cellbox.sandbox.netpolicy import allow_addresses as allow_script
from cellbox.sandbox.netpolicy import ruleset as rules_script

if TYPE_CHECKING:
    from cellbox.sandbox.network import Network

TAP = "tap0"
READY_TIMEOUT_S = 10.0
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_T = TypeVar("_T")


class NetworkError(RuntimeError):
    """A context's network could not be set up."""


def _set_namespace(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def in_namespace(ns_fd: int, action: Callable[[], _T]) -> _T:
    """Run ``action`` in this thread switched into the namespace ``ns_fd``, then switch back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _set_namespace(ns_fd)
        try:
            return action()
        finally:
            _set_namespace(own)  # root can always go back; a thread left behind would be a bug
    finally:
        os.close(own)


def is_own_namespace(ns_fd: int) -> bool:
    """Is ``ns_fd`` the network namespace this thread is in?"""
    own = os.stat("/proc/thread-self/ns/net")
    theirs = os.fstat(ns_fd)
    return (own.st_dev, own.st_ino) == (theirs.st_dev, theirs.st_ino)


def _dns_sockets() -> tuple[socket.socket, socket.socket]:
    """The resolver's UDP socket and listening TCP socket, on port 53 of the namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((DNS_ADDRESS, 53))
        tcp.bind((DNS_ADDRESS, 53))
        tcp.listen(dns.MAX_TCP_CONNECTIONS)
    except OSError:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


class Link:
    """One worker's network namespace as the server holds it: rules, slirp4netns, DNS."""

    def __init__(self, network: Network, ns_fd: int) -> None:
        self.policy: Policy | None = None
        self._network = network
        self._ns_fd = ns_fd
        self._slirp: Child | None = None
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
            sockets = await asyncio.to_thread(in_namespace, self._ns_fd, _dns_sockets)
            if self._ns_fd < 0:  # closed meanwhile
                for sock in sockets:
                    sock.close()
                raise NetworkError("the context's network is closed")
            self._dns = forwarder
            await forwarder.serve(*sockets)
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
        process = await placement.spawn(
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
            self._slirp = await placement.spawn(
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
