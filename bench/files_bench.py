"""File transfer figure: upload and download of one large file, and the server's RSS meanwhile.

The client streams the body from one preallocated megabyte (and discards what it downloads),
so the client's own memory stays flat too. A thread samples the server process's ``VmRSS``
every 10 ms; the figure is the largest growth over the RSS measured just before each transfer.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlsplit

MiB = 1 << 20


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class _PeakRss:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = _rss_mb(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_mb(self.pid))

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb(self.pid))

    @property
    def growth(self) -> float:
        return round(self.peak - self.before, 1)


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)


def _call(
    conn: http.client.HTTPConnection, method: str, path: str, key: str, body: bytes = b""
) -> dict:
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
    return json.loads(data) if data else {}


def transfer(url: str, api_key: str, server_pid: int | None, size_mb: int = 500) -> dict:
    """Upload then download ``size_mb`` MB through the file API of a fresh context."""
    if server_pid is None:
        raise RuntimeError("needs the server's pid (a server started by the bench)")
    conn = _connect(url)
    context = _call(conn, "POST", "/contexts", api_key, b"{}")["id"]
    path = f"/contexts/{context}/files/bench/big.bin"
    block = bytes(range(256)) * (MiB // 256)
    try:
        with _PeakRss(server_pid) as up:
            start = time.perf_counter()
            conn.putrequest("PUT", path)
            conn.putheader("Authorization", f"Bearer {api_key}")
            conn.putheader("Content-Length", str(size_mb * MiB))
            conn.endheaders()
            for _ in range(size_mb):
                conn.send(block)
            response = conn.getresponse()
            answer = json.loads(response.read())
            upload_s = time.perf_counter() - start
        if response.status != 200 or answer.get("size") != size_mb * MiB:
            raise RuntimeError(f"upload failed: {response.status} {answer}")
        buffer = bytearray(MiB)
        received = 0
        with _PeakRss(server_pid) as down:
            start = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": f"Bearer {api_key}"})
            response = conn.getresponse()
            while count := response.readinto(buffer):
                received += count
            download_s = time.perf_counter() - start
        if response.status != 200 or received != size_mb * MiB:
            raise RuntimeError(f"download failed: {response.status}, {received} bytes")
    finally:
        _call(conn, "DELETE", f"/contexts/{context}", api_key)
        conn.close()
    growth = max(up.growth, down.growth)
    return {
        "value": growth,
        "size_mb": size_mb,
        "upload_mb_s": round(size_mb / upload_s, 1),
        "download_mb_s": round(size_mb / download_s, 1),
        "server_rss_before_mb": round(up.before, 1),
        "server_rss_growth_upload_mb": up.growth,
        "server_rss_growth_download_mb": down.growth,
        "summary": (
            f"up {size_mb / upload_s:.0f} MB/s, down {size_mb / download_s:.0f} MB/s, "
            f"server RSS +{growth:.1f} MB"
        ),
    }
