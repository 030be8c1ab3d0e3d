"""Every API call as a pure description: the request to send and how to read its answer.

The blocking and asyncio faces (``sync.py``, ``aio.py``) only send these: each request's shape and
each answer's parsing is written here once, and can be checked without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar, cast
from urllib.parse import quote

import httpx
import orjson

from cellbox.client.core import URL_VAR, Config, create_timeout, execution_timeout
from cellbox.client.errors import APIError, ContextNotFound
from cellbox.client.models import ContextInfo, Execution, FileInfo, Unpacked, Uploaded

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the rule that turns its answer's JSON into the call's result.

    ``parse`` is None for calls whose answer has no JSON body to read here (204s, downloads and
    event streams, which the faces read as they arrive). ``server_timeout`` marks an execution
    that names no timeout: it runs for the server's default timeout, which ``timeout`` cannot
    know here, so a face that knows it sends :meth:`waiting` for it instead.
    """

    method: str
    path: str
    parse: Callable[[Any], T] | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    timeout: httpx.Timeout | None = None
    server_timeout: bool = False

    def waiting(self, config: Config, server_default: float | None) -> Call[T]:
        """This call, waited for as long as an execution under the server's default timeout
        (``server_default`` seconds; None: not known) may last."""
        if not self.server_timeout:
            return self
        wait = execution_timeout(config, None, server_default)
        return replace(self, timeout=wait, server_timeout=False)

    def build(self, http: httpx.Client | httpx.AsyncClient, **body: Any) -> httpx.Request:
        """The httpx request; ``body`` carries an upload's ``content`` and ``headers``."""
        if self.json is not None:
            body["json"] = self.json
        if self.timeout is not None:
            body["timeout"] = self.timeout
        return http.build_request(self.method, self.path, params=self.params, **body)

    def result(self, content: bytes, status: int = 200) -> T:
        """What the call returns for a successful answer's body."""
        if self.parse is None:
            return cast(T, None)
        try:
            return self.parse(orjson.loads(content))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise APIError(
                f"the answer to {self.method} {self.path} is not one the cellbox API gives "
                f"({exc}): does {URL_VAR} (or --url) name a cellbox server?",
                status,
                content[:500].decode("utf-8", "replace"),
            ) from exc


class HasId(Protocol):
    @property
    def id(self) -> str: ...


def context_id(context: str | HasId) -> str:
    """A context given by id or as a context object."""
    return context if isinstance(context, str) else context.id


def _each_item(parse: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    """The parser of a list answer (``{"items": [...]}``)."""
    return lambda data: [parse(item) for item in data["items"]]


def _is_ok(data: Any) -> bool:
    return data.get("status") == "ok"


def _unchanged(data: Any) -> Any:
    return data


# ---- executions and the server ----


def execute(
    config: Config,
    code: str,
    language: str | None,
    context: str | HasId | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
) -> Call[Execution]:
    """``POST /execute``; waited for as long as the execution's own timeout allows, plus slack
    (without one: the longest a request may ask for, until :meth:`Call.waiting` is told the
    server's default)."""
    body = execute_body(code, language, context, env, timeout)
    wait = execution_timeout(config, timeout)
    return Call(
        "POST",
        "/execute",
        Execution.from_json,
        json=body,
        timeout=wait,
        server_timeout=timeout is None,
    )


def stream(execution: Call[Execution]) -> Call[None]:
    """The same execution asked of ``POST /execute/async``: its answer is a stream of events."""
    return Call(
        "POST",
        "/execute/async",
        json=execution.json,
        timeout=execution.timeout,
        server_timeout=execution.server_timeout,
    )


def health() -> Call[bool]:
    return Call("GET", "/healthz", _is_ok)


def info() -> Call[dict[str, Any]]:
    return Call("GET", "/info", _unchanged)


def execute_body(
    code: str,
    language: str | None,
    context: str | HasId | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code}
    if language is not None:
        body["language"] = language
    if context is not None:
        body["context_id"] = context_id(context)
    if env:
        body["env_vars"] = dict(env)
    if timeout is not None:
        # A positive timeout under half a millisecond is 1 ms, not the 0 the API refuses.
        millis = round(timeout * 1000)
        body["timeout_ms"] = max(millis, 1) if timeout > 0 else millis
    return body


# ---- contexts ----


def create_context(
    config: Config, language: str, cwd: str | None, network: Any, packages: list[str] | None
) -> Call[ContextInfo]:
    body: dict[str, Any] = {"language": language}
    for name, value in (("cwd", cwd), ("network", network), ("packages", packages)):
        if value is not None:
            body[name] = value
    wait = create_timeout(config, packages)
    return Call("POST", "/contexts", ContextInfo.from_json, json=body, timeout=wait)


def list_contexts() -> Call[list[ContextInfo]]:
    return Call("GET", "/contexts", _each_item(ContextInfo.from_json))


def get_context(context: str | HasId) -> Call[ContextInfo]:
    return Call("GET", context_path(context), ContextInfo.from_json)


def delete_context(context: str | HasId) -> Call[None]:
    return Call("DELETE", context_path(context))


def restart_context(context: str | HasId) -> Call[ContextInfo]:
    return Call("POST", context_path(context, "restart"), ContextInfo.from_json)


def interrupt_context(context: str | HasId) -> Call[ContextInfo]:
    return Call("POST", context_path(context, "interrupt"), ContextInfo.from_json)


def download_archive(context: str | HasId, path: str | None) -> Call[None]:
    """The work directory (or ``path`` in it) as tar.gz: the body is streamed by the face."""
    return Call("GET", context_path(context, "archive"), params=_archive_params(path))


def upload_archive(context: str | HasId, path: str | None) -> Call[Unpacked]:
    """Unpack the uploaded tar(.gz) under ``path``; the face sends the body."""
    route = context_path(context, "archive")
    return Call("PUT", route, Unpacked.from_json, params=_archive_params(path))


def _archive_params(path: str | None) -> dict[str, str]:
    return {"path": path} if path else {}


def context_path(context: str | HasId, *rest: str) -> str:
    ident = context_id(context)
    if not ident or "/" in ident:
        # No context has such an id, and in a URL it names another route (a redirect or a
        # bare "Not Found" would say less).
        raise ContextNotFound(f"context {ident!r} not found: an id is never empty nor has a '/'")
    return "/".join(["/contexts", quote(ident, safe=""), *rest])


# ---- files ----


def upload_file(context: str | HasId, path: str) -> Call[Uploaded]:
    return Call("PUT", file_path(context, path), Uploaded.from_json)


def download_file(context: str | HasId, path: str) -> Call[None]:
    return Call("GET", file_path(context, path))


def delete_file(context: str | HasId, path: str) -> Call[None]:
    return Call("DELETE", file_path(context, path))


def list_files(context: str | HasId, path: str, recursive: bool) -> Call[list[FileInfo]]:
    params = {"recursive": "true" if recursive else "false"}
    if path:
        params["path"] = path
    return Call("GET", context_path(context, "files"), _each_item(FileInfo.from_json), params)


def file_path(context: str | HasId, path: str) -> str:
    # Dot segments are escaped so that no URL normalisation on the way drops them: the server
    # judges the path as given (and refuses one that leaves the work directory).
    segments = [quote(part, safe="") for part in path.split("/")]
    escaped = [part.replace(".", "%2E") if part in (".", "..") else part for part in segments]
    return context_path(context, "files", "/".join(escaped))
