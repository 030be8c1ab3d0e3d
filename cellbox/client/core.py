"""What both faces share besides the calls: configuration, error mapping, files, common state."""

from __future__ import annotations

import io
import ipaddress
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import orjson

from cellbox.client.errors import (
    APIError,
    CellboxError,
    ConfigurationError,
    ConnectionFailed,
    PayloadTooLarge,
    RequestTimeout,
    StreamClosed,
    error_for,
)
from cellbox.client.models import ContextInfo, Event, Execution, Exit, fold_events, parse_event

URL_VAR = "CELLBOX_URL"
KEY_VAR = "CELLBOX_API_KEY"
STATE_DIR_VAR = "CELLBOX_STATE_DIR"
DEFAULT_URL = "http://127.0.0.1:8000"

# The longest execution the API allows (timeout_ms ≤ 600000) and the slack on top of an
# execution's own timeout for the interrupt grace, a kill and the answer's trip.
MAX_EXECUTION_S = 600.0
EXECUTION_SLACK_S = 30.0
CONNECT_S = 10.0
CHUNK = 1 << 16

Source = str | os.PathLike[str] | bytes | IO[bytes]
Destination = str | os.PathLike[str] | IO[bytes]


@dataclass(frozen=True)
class Config:
    """Where the server is, the token, and the timeout of calls that run no code (None: as
    long as the server takes; connecting still gives up after 10 s)."""

    url: str
    api_key: str | None
    timeout: float | None = 30.0
    key_source: str = ""  # "argument", KEY_VAR or the token file's path; "" when there is no key

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = 30.0,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Arguments first, then ``CELLBOX_URL``/``CELLBOX_API_KEY``, then a local server's token file."""
        environ = os.environ if environ is None else environ
        url = check_url((url or environ.get(URL_VAR) or DEFAULT_URL).strip().rstrip("/"))
        # Whitespace around a token is not part of it (a file read whole ends in a newline).
        if api_key and (key := api_key.strip()):
            return cls(url, check_key(key), timeout, "argument")
        if key := environ.get(KEY_VAR, "").strip():
            return cls(url, check_key(key), timeout, KEY_VAR)
        path = token_file(environ)
        if is_local(url) and (key := read_token_file(path)):
            return cls(url, check_key(key), timeout, str(path))
        return cls(url, None, timeout)


def check_url(url: str) -> str:
    """``url`` if it names an HTTP server; else a clear error now, not a puzzling one later."""
    try:
        parts = urlsplit(url)
        httpx.URL(url)  # what the requests will be made of: a port that is no number, …
    except (ValueError, httpx.InvalidURL) as exc:
        raise ConfigurationError(
            f"the cellbox server URL {url!r} is not a valid URL ({exc}): check --url or {URL_VAR}"
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"the cellbox server URL must look like {DEFAULT_URL} (http:// or https://, then the "
            f"host), got {url!r}: check --url or {URL_VAR}"
        )
    return url


def check_key(key: str) -> str:
    """``key`` if it can be sent in a header; else a clear error now (not a failed request)."""
    if key.isascii() and key.isprintable():
        return key
    raise ConfigurationError(
        "the API token holds characters a header cannot carry (it is printable ASCII, as "
        f"`cellbox serve` makes it): check --api-key, {KEY_VAR} or the token file"
    )


def is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_file(environ: Mapping[str, str]) -> Path:
    """The token file a local ``cellbox serve`` with the same environment writes."""
    from cellbox.config import _default_state_dir

    return Path(environ.get(STATE_DIR_VAR) or _default_state_dir()) / "api-token"


def read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def client_options(config: Config) -> dict[str, Any]:
    """What both faces' httpx clients are made with: the server, the token, the timeout."""
    headers = {"User-Agent": "cellbox-client"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return {"base_url": config.url, "headers": headers, "timeout": http_timeout(config)}


def http_timeout(config: Config) -> httpx.Timeout:
    return httpx.Timeout(config.timeout, connect=connect_timeout(config))


def connect_timeout(config: Config) -> float:
    """Connecting gives up after 10 s, or the calls' own timeout when that is shorter."""
    return CONNECT_S if config.timeout is None else min(config.timeout, CONNECT_S)


def execution_timeout(
    config: Config, timeout: float | None, server_default: float | None = None
) -> httpx.Timeout:
    """How long to wait for an execution's answer: its own timeout plus slack, never forever.
    Without one of its own, the server's default timeout (``server_default``, seconds) is the
    execution's; when that is not known, the longest timeout a request may ask for."""
    own = timeout if timeout is not None else server_default
    limit = (own if own is not None else MAX_EXECUTION_S) + EXECUTION_SLACK_S
    return httpx.Timeout(limit, connect=connect_timeout(config))


def server_default_timeout(info: Mapping[str, Any]) -> float | None:
    """The execution timeout (seconds) of a request that names none, from ``GET /info``;
    None when the answer does not tell it."""
    limits = info.get("limits") if isinstance(info, Mapping) else None
    millis = limits.get("default_timeout_ms") if isinstance(limits, Mapping) else None
    if isinstance(millis, int) and not isinstance(millis, bool) and millis > 0:
        return millis / 1000
    return None


# How long the server's default timeout, once read, is taken as still true: a server restarted
# meanwhile with another ``--default-timeout-ms`` is believed again within this.
SERVER_DEFAULT_FOR_S = 60.0


class ServerDefault:
    """The server's default execution timeout, as ``GET /info`` last told it, and when."""

    def __init__(self) -> None:
        self.seconds: float | None = None  # None: not told (or not yet read)
        self._read_at: float | None = None  # time.monotonic() of the last reading

    def due(self) -> bool:
        """Is it time to read it (again)?"""
        read_at = self._read_at
        return read_at is None or time.monotonic() - read_at >= SERVER_DEFAULT_FOR_S

    def read(self, info: Mapping[str, Any]) -> None:
        self.seconds = server_default_timeout(info)
        self._read_at = time.monotonic()


def create_timeout(config: Config, packages: list[str] | None) -> httpx.Timeout:
    """Creating a context is quick, unless it installs packages first."""
    return execution_timeout(config, None) if packages else http_timeout(config)


def check(response: httpx.Response) -> httpx.Response:
    """The response itself when it succeeded, else its typed error (body already read)."""
    if response.is_success:
        return response
    if response.is_redirect:  # the API never redirects: a proxy in front does (http → https)
        where = response.headers.get("location", "")
        raise APIError(
            f"the server at {response.request.url} redirects to {where}: point {URL_VAR} "
            "(or --url) at the address it names",
            response.status_code,
        )
    raise error_for(response.status_code, response.content)


@contextmanager
def transport_errors(url: str) -> Iterator[None]:
    """Turn httpx's transport failures into this client's clear, typed errors."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise RequestTimeout(
            f"no answer from the cellbox server at {url} in time ({exc!r})"
        ) from exc
    except httpx.ConnectError as exc:
        raise ConnectionFailed(
            f"cannot connect to the cellbox server at {url} ({exc}); is it running? "
            f"Start one with `cellbox serve` or point {URL_VAR} at it"
        ) from exc
    except httpx.TransportError as exc:
        raise ConnectionFailed(f"the connection to {url} failed mid-answer ({exc!r})") from exc


@contextmanager
def cleanup_after(failure: BaseException | None) -> Iterator[None]:
    """Around the cleanup at the end of a ``with`` block: when the block itself failed, its
    error is the one the caller sees and may catch, not the cleanup's (the server may be
    gone too)."""
    try:
        yield
    except CellboxError:
        if failure is None:
            raise


# ---- upload sources and download destinations (plain files and file objects) ----


@dataclass
class OpenSource:
    file: IO[bytes]
    size: int | None
    owned: bool
    sent: int = 0  # bytes read from the file for the request so far

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.file.read(CHUNK):
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        if self.owned:
            self.file.close()

    def upload_headers(self) -> dict[str, str]:
        out = {"Content-Type": "application/octet-stream"}
        if self.size is not None:
            out["Content-Length"] = str(self.size)
        return out


def open_source(source: Source) -> OpenSource:
    """A readable binary file for ``source`` (path, bytes or file object) and its size if known."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)  # the length of a memoryview counts its items, not bytes
        return OpenSource(io.BytesIO(data), len(data), owned=True)
    if isinstance(source, str | os.PathLike):
        try:
            handle = open(source, "rb")  # noqa: SIM115 - closed by OpenSource.close
        except FileNotFoundError as exc:
            if not isinstance(source, str):
                raise
            raise FileNotFoundError(  # a str may have been meant as the content itself
                exc.errno,
                "no such local file (a str names the file to upload: to upload text itself, "
                "pass it as bytes, e.g. text.encode())",
                source,
            ) from exc
        return OpenSource(handle, os.fstat(handle.fileno()).st_size, owned=True)
    if isinstance(source, io.TextIOBase) or not callable(getattr(source, "read", None)):
        raise TypeError(
            "an upload takes a local path, bytes or a binary file object (opened with 'rb'), "
            f"not {type(source).__name__}"
        )
    return OpenSource(source, _remaining(source), owned=False)


def _remaining(file: IO[bytes]) -> int | None:
    try:
        if not file.seekable():
            return None
        here = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


def refused_upload(opened: OpenSource, info: Mapping[str, Any]) -> PayloadTooLarge | None:
    """The 413 an upload whose connection broke most likely met: past the upload limit
    (``info``: ``GET /info``), the server answers 413, reads a bounded rest of the body and
    closes, and a client still sending may see only the reset, not the answer."""
    limit = (info.get("limits") or {}).get("upload_limit_bytes")
    size = opened.size if opened.size is not None else opened.sent
    if not isinstance(limit, int) or size <= limit:
        return None
    return PayloadTooLarge(
        f"upload larger than the limit ({limit} bytes): the server refused it and closed the "
        "connection",
        413,
    )


@contextmanager
def destination(dest: Destination) -> Iterator[IO[bytes]]:
    """``dest`` opened for writing; a file written here is removed again when the block fails
    (one that could not be opened, e.g. a read-only file, is left as it was)."""
    if not isinstance(dest, str | os.PathLike):
        yield dest
        return
    path = Path(dest)
    file = open(path, "wb")  # noqa: SIM115 - closed by the with below
    try:
        with file:
            yield file
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# ---- what the two faces' objects hold alike ----


STREAM_CUT = "the event stream ended before the execution finished"
STREAM_CLOSED = (
    "this execution's events were already read up to where an earlier loop over them stopped "
    "(a break, close() or an error), and the stream was closed there: read the events in one "
    "loop, or call result() instead"
)


class EventLog:
    """The events of one execution stream so far; ``execution`` once the exit event arrived.

    Both faces read the stream to its end before they hand out the exit event: the server
    takes a client that hangs up before the end for one that left, and then tells a loss of
    state reported on this stream to the next execution again (instead of running its code).

    The answer's body can be read once: a loop over a stream that has ended yields nothing
    more (``result()`` then returns the execution), and a loop after one that stopped early
    raises :class:`StreamClosed` instead of running the code again or failing obscurely.
    """

    def __init__(self) -> None:
        self._events: list[Event] = []
        self.execution: Execution | None = None
        self._response: httpx.Response | None = None  # the stream, once the server answered
        self._used = False  # a loop over the events began, or the stream was closed

    @property
    def started(self) -> bool:
        """True once the server answered the stream, which it does when the code starts."""
        return self._response is not None

    def _begin_reading(self) -> bool:
        """Whether a new loop over the events reads the stream (False: it has ended)."""
        if self.execution is not None:
            return False
        if self._used:
            raise StreamClosed(STREAM_CLOSED)
        self._used = True
        return True

    def _read(self, data: str) -> Event:
        """One SSE ``data:`` payload as an event, kept for the fold."""
        event = parse_event(orjson.loads(data))
        self._events.append(event)
        return event

    def _finished(self, event: Event) -> bool:
        """True after the exit event (the stream ends there), with the execution folded."""
        if isinstance(event, Exit):
            self.execution = fold_events(self._events)
        return self.execution is not None


class ContextView:
    """A context's description, as both faces' context objects show it."""

    def __init__(self, info: ContextInfo) -> None:
        self.info = info

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def language(self) -> str:
        return self.info.language

    @property
    def cwd(self) -> str:
        return self.info.cwd

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, language={self.language!r})"
