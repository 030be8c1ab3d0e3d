"""A DNS server run by a test on a loopback address: every query is answered by a function."""

from __future__ import annotations

import socket
from collections.abc import Callable

import dns.exception
import dns.message

from tests.serving import Serving

Answer = Callable[[dns.message.Message], "dns.message.Message | None"]


class DnsServer(Serving):
    """UDP on ``host:port`` (port 0: a free one); ``answer(query)`` is the reply, None: none.

    ``asked`` lists the names queried, in order.
    """

    def __init__(self, answer: Answer, host: str = "127.0.0.1", port: int = 0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        self.address: tuple[str, int] = sock.getsockname()
        self.port = self.address[1]
        self.answer = answer
        self.asked: list[str] = []
        super().__init__(sock)

    def serve_once(self) -> None:
        try:
            data, peer = self.sock.recvfrom(65535)
            query = dns.message.from_wire(data)
        except (OSError, dns.exception.DNSException):
            return
        self.asked.append(query.question[0].name.to_text(omit_final_dot=True))
        reply = self.answer(query)
        if reply is not None:
            self.sock.sendto(reply.to_wire(), peer)
