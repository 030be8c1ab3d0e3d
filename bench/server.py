"""Starting the real cellbox server as a subprocess, and a small client for its API."""

from __future__ import annotations

import abc
import http.client
import json
import signal
import time
import urllib.parse

import httpx

from cellbox.serve_process import SERVE, ServeProcess


class ApiError(RuntimeError):
    """A non-2xx answer, or a 200 whose ``error`` is set when none was expected."""

    def __init__(self, message: str, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Server(ServeProcess):
    """``cellbox serve`` on a free loopback port, with its own API key and state dir."""

    def __init__(self, extra_args: list[str]) -> None:
        super().__init__(prefix="cellbox-bench-server-")
        self.api_key = self.token
        self.command = [*SERVE, *extra_args]

    def start(self, timeout: float = 60.0) -> float:
        """Start the server and wait for ``GET /healthz`` 200; returns seconds taken."""
        return self.launch(self.command, own_session=True, timeout=timeout)

    def stop(self, grace: float = 15.0) -> str:  # type: ignore[override]
        """SIGINT, then SIGKILL to the whole session after ``grace`` seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return "not running"
        started = time.monotonic()
        code = super().stop(signal.SIGINT, grace)
        if time.monotonic() - started >= grace:
            return f"killed after {grace} s"
        return f"exited on SIGINT (code {code})"


class Api(abc.ABC):
    """A client for the API on one keep-alive connection; subclasses pick the HTTP library.

    Timings cover sending the request and reading the whole response body; encoding
    the request JSON and decoding the response happen outside them.
    """

    kind = "abstract"

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.headers = {"Authorization": f"Bearer {api_key}"}

    @abc.abstractmethod
    def _request(self, method: str, path: str, payload: bytes | None) -> tuple[int, int, bytes]:
        """(nanoseconds, status, body) of one request."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def timed_execute(
        self, code: str, language: str | None = None, context_id: str | None = None
    ) -> tuple[int, dict]:
        """(nanoseconds around the HTTP request, response body). Raises ApiError."""
        body: dict = {"code": code}
        if language is not None:
            body["language"] = language
        if context_id is not None:
            body["context_id"] = context_id
        elapsed, status, raw = self._request("POST", "/execute", json.dumps(body).encode())
        return elapsed, check_execute(status, raw)

    def execute(
        self, code: str, language: str | None = None, context_id: str | None = None
    ) -> dict:
        return self.timed_execute(code, language, context_id)[1]

    def timed_get(self, path: str) -> int:
        elapsed, status, raw = self._request("GET", path, None)
        if status != 200:
            raise ApiError(f"GET {path} -> {status}", status, raw[:500])
        return elapsed

    def delete(self, context_id: str) -> None:
        _, status, raw = self._request("DELETE", f"/contexts/{context_id}", None)
        if status not in (204, 404):
            raise ApiError(f"DELETE /contexts/{context_id} -> {status}", status, raw[:500])

    def get_context(self, context_id: str) -> dict:
        _, status, raw = self._request("GET", f"/contexts/{context_id}", None)
        if status != 200:
            raise ApiError(f"GET /contexts/{context_id} -> {status}", status, raw[:500])
        return json.loads(raw)

    def check_auth(self) -> None:
        _, status, raw = self._request("GET", "/contexts", None)
        if status != 200:
            raise ApiError(f"GET /contexts -> {status}", status, raw[:500])


class HttpxApi(Api):
    """``httpx.Client`` (keep-alive, sequential requests)."""

    kind = "httpx"

    def __init__(self, url: str, api_key: str, timeout: float = 120.0) -> None:
        super().__init__(url, api_key)
        self.client = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def _request(self, method: str, path: str, payload: bytes | None) -> tuple[int, int, bytes]:
        headers = JSON_HEADERS if payload is not None else None
        t0 = time.perf_counter_ns()
        response = self.client.request(method, path, content=payload, headers=headers)
        elapsed = time.perf_counter_ns() - t0
        return elapsed, response.status_code, response.content

    def close(self) -> None:
        self.client.close()


class StdlibApi(Api):
    """``http.client.HTTPConnection``: far less client CPU per request than httpx."""

    kind = "http.client"

    def __init__(self, url: str, api_key: str, timeout: float = 120.0) -> None:
        super().__init__(url, api_key)
        parts = urllib.parse.urlsplit(self.url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._timeout = timeout
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._headers = {**self.headers, **JSON_HEADERS}

    def _request(self, method: str, path: str, payload: bytes | None) -> tuple[int, int, bytes]:
        for attempt in (1, 2):
            t0 = time.perf_counter_ns()
            try:
                self._conn.request(method, path, body=payload, headers=self._headers)
                response = self._conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection; reconnect once.
                self._conn.close()
                if attempt == 2:
                    raise
                continue
            return time.perf_counter_ns() - t0, response.status, raw
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._conn.close()

    def timed_first_event(self, code: str, context_id: str) -> tuple[int, list[dict]]:
        """(nanoseconds from sending ``POST /execute/async`` to its first event, all events)."""
        body = json.dumps({"code": code, "context_id": context_id}).encode()
        t0 = time.perf_counter_ns()
        self._conn.request("POST", "/execute/async", body=body, headers=self._headers)
        response = self._conn.getresponse()
        if response.status != 200:
            raise ApiError(f"/execute/async -> {response.status}", response.status, response.read())
        events: list[dict] = []
        elapsed = 0
        while not events or events[-1].get("type") != "exit":
            line = response.readline()
            if not line:
                raise ApiError("/execute/async ended before its exit event")
            if line.startswith(b"data: "):
                if not events:
                    elapsed = time.perf_counter_ns() - t0
                events.append(json.loads(line[6:]))
        response.read()
        return elapsed, events


CLIENTS: dict[str, type[Api]] = {"httpx": HttpxApi, "stdlib": StdlibApi}
JSON_HEADERS = {"Content-Type": "application/json"}


def check_execute(status: int, raw: bytes) -> dict:
    """The body of a successful execution; ApiError for HTTP errors or a cell error."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = raw[:500].decode(errors="replace")
    if status != 200:
        raise ApiError(f"POST /execute -> {status}: {data}", status, data)
    if data.get("error"):
        err = data["error"]
        raise ApiError(f"cell error {err.get('name')}: {err.get('value')}", 200, err)
    return data


def primary_text(data: dict) -> str | None:
    for item in data.get("items", []):
        if item.get("is_primary"):
            return item.get("text")
    return None
