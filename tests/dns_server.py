"""A DNS server run by a test on a loopback address: every query is answered by a function."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import dns.exception
import dns.message

Answer = Callable[[dns.message.Message], "dns.message.Message | None"]


class DnsServer:
    """UDP on ``host:port`` (port 0: a free one); ``answer(query)`` is the reply, None: none.

    ``asked`` lists the names queried, in order.
    """

    def __init__(self, answer: Answer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.port = self.address[1]
        self.answer = answer
        self.asked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
                query = dns.message.from_wire(data)
            except (OSError, dns.exception.DNSException):
                continue
            self.asked.append(query.question[0].name.to_text(omit_final_dot=True))
            reply = self.answer(query)
            if reply is not None:
                self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
