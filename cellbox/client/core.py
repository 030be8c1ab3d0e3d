"""What both faces share and what needs no I/O: configuration, request shapes, error mapping."""

from __future__ import annotations

import io
import ipaddress
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

from cellbox.client.errors import ConnectionFailed, RequestTimeout, error_for

URL_VAR = "CELLBOX_URL"
KEY_VAR = "CELLBOX_API_KEY"
STATE_DIR_VAR = "CELLBOX_STATE_DIR"
DEFAULT_URL = "http://127.0.0.1:8000"

# The longest execution the API allows (timeout_ms ≤ 600000) and the slack on top of an
# execution's own timeout for the interrupt grace, a kill and the answer's trip.
MAX_EXECUTION_S = 600.0
EXECUTION_SLACK_S = 30.0
CHUNK = 1 << 16

Source = str | os.PathLike[str] | bytes | IO[bytes]
Destination = str | os.PathLike[str] | IO[bytes]


@dataclass(frozen=True)
class Config:
    """Where the server is, the token, and the timeout of calls that run no code."""

    url: str
    api_key: str | None
    timeout: float = 30.0

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Arguments first, then ``CELLBOX_URL``/``CELLBOX_API_KEY``, then a local server's token file."""
        environ = os.environ if environ is None else environ
        url = (url or environ.get(URL_VAR) or DEFAULT_URL).rstrip("/")
        key = api_key or environ.get(KEY_VAR, "").strip() or None
        if key is None and is_local(url):
            key = read_token_file(token_file(environ))
        return cls(url, key, timeout)


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


def headers(config: Config) -> dict[str, str]:
    out = {"User-Agent": "cellbox-client"}
    if config.api_key:
        out["Authorization"] = f"Bearer {config.api_key}"
    return out


def http_timeout(config: Config) -> httpx.Timeout:
    return httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0))


def execution_timeout(config: Config, timeout: float | None) -> httpx.Timeout:
    """How long to wait for an execution's answer: its own timeout plus slack, never forever."""
    limit = (timeout if timeout is not None else MAX_EXECUTION_S) + EXECUTION_SLACK_S
    return httpx.Timeout(limit, connect=min(config.timeout, 10.0))


def create_timeout(config: Config, packages: list[str] | None) -> httpx.Timeout:
    """Creating a context is quick, unless it installs packages first."""
    return execution_timeout(config, None) if packages else http_timeout(config)


class HasId(Protocol):
    @property
    def id(self) -> str: ...


def context_id(context: str | HasId | None) -> str | None:
    """A context given by id or as a context object."""
    return context if context is None or isinstance(context, str) else context.id


def execute_body(
    code: str,
    language: str | None,
    context_id: str | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code}
    if language is not None:
        body["language"] = language
    if context_id is not None:
        body["context_id"] = context_id
    if env:
        body["env_vars"] = dict(env)
    if timeout is not None:
        body["timeout_ms"] = round(timeout * 1000)
    return body


def create_body(
    language: str, cwd: str | None, network: Any, packages: list[str] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"language": language}
    for name, value in (("cwd", cwd), ("network", network), ("packages", packages)):
        if value is not None:
            body[name] = value
    return body


def context_path(context_id: str, *rest: str) -> str:
    return "/".join(["/contexts", quote(context_id, safe=""), *rest])


def file_path(context_id: str, path: str) -> str:
    if not path:
        raise ValueError("a file path is needed")
    # Dot segments are escaped so that no URL normalisation on the way drops them: the server
    # judges the path as given (and refuses one that leaves the work directory).
    segments = [quote(part, safe="") for part in path.split("/")]
    escaped = [part.replace(".", "%2E") if part in (".", "..") else part for part in segments]
    return context_path(context_id, "files", "/".join(escaped))


def list_params(path: str, recursive: bool) -> dict[str, str]:
    params = {"recursive": "true" if recursive else "false"}
    if path:
        params["path"] = path
    return params


def archive_params(path: str | None) -> dict[str, str]:
    return {"path": path} if path else {}


def check(response: httpx.Response) -> httpx.Response:
    """The response itself when it succeeded, else its typed error (body already read)."""
    if response.status_code >= 400:
        raise error_for(response.status_code, response.content)
    return response


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


# ---- upload sources and download destinations (plain files and file objects) ----


@dataclass
class OpenSource:
    file: IO[bytes]
    size: int | None
    owned: bool

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
        return OpenSource(io.BytesIO(bytes(source)), len(source), owned=True)
    if isinstance(source, str | os.PathLike):
        handle = open(source, "rb")  # noqa: SIM115 - closed by OpenSource.close
        return OpenSource(handle, os.fstat(handle.fileno()).st_size, owned=True)
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


def read_chunks(file: IO[bytes]) -> Iterator[bytes]:
    while chunk := file.read(CHUNK):
        yield chunk


@dataclass
class OpenDestination:
    file: IO[bytes]
    path: Path | None  # set when this client created the file (removed again on failure)

    def finish(self, ok: bool) -> None:
        if self.path is None:
            return
        self.file.close()
        if not ok:
            self.path.unlink(missing_ok=True)


def open_destination(dest: Destination) -> OpenDestination:
    if isinstance(dest, str | os.PathLike):
        path = Path(dest)
        return OpenDestination(open(path, "wb"), path)  # noqa: SIM115 - closed by finish
    return OpenDestination(dest, None)
