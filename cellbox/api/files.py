"""Routes for the files of a context: upload, download (with Range), list, delete, archives.

Every file operation runs on a file thread holding the context's uid (``cellbox.sandbox.files``);
bodies stream through in chunks of about a megabyte both ways, so the server's memory does not
grow with a file's size. File calls never take the context's execution lock: a long computation
does not hold up a download.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import posixpath
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote_to_bytes

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cellbox import metrics
from cellbox.api.models import InvalidRequest as InvalidRequestBody
from cellbox.api.models import Message
from cellbox.api.openapi import NOT_FOUND
from cellbox.api.responses import JSON
from cellbox.api.streams import Pipe, PipeReader
from cellbox.config import Settings
from cellbox.placement import placement
from cellbox.sandbox import archive, files, tree
from cellbox.sandbox.files import FileError
from cellbox.sessions.registry import ContextNotFound, ContextRegistry

T = TypeVar("T")
UPLOAD_PATHS = re.compile(r"/contexts/[^/]+/(files/|archive$)")  # streamed PUT bodies
_CHUNK = 1 << 20
_THREADS = 16
# An archive stream holds its thread while it waits for its client, however slow: streams get
# threads of their own, so slow clients never leave the short file calls of other contexts
# waiting for one.
_STREAM_THREADS = 256


class FileWritten(BaseModel):
    path: str
    size: int


class FileItem(BaseModel):
    path: str
    type: str
    size: int
    modified: str


class FileList(BaseModel):
    items: list[FileItem]


class ArchiveWritten(BaseModel):
    path: str
    files: int
    size: int


_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    400: {"model": InvalidRequestBody, "description": "Bad path, bad archive member"},
    403: {"model": Message, "description": "The context itself may not do this"},
    404: {"model": Message, "description": "Unknown context or missing file"},
}
_RANGE = {
    "name": "Range",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "One byte range: bytes=first-last, bytes=first- or bytes=-count "
    "(206; 416 past the end; anything else is ignored and the whole file sent)",
}
# Any bytes: a file's type is guessed from its name, an upload may say any type.
_BYTES = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
_UPLOAD_ERRORS = {
    **_ERRORS,
    413: {"model": Message, "description": "Larger than the upload limit"},
    507: {"model": Message, "description": "Past the context's disk quota (nothing kept)"},
}


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte span ``[start, end)`` a ``Range`` header asks for; ``None``: the whole file.

    Only single ``bytes=`` ranges are honoured (a server may ignore the others). Raises
    ``ValueError`` when the range cannot be satisfied (a 416).
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    if not sep or not (first.isdigit() or (not first and last.isdigit())):
        return None
    if last and not last.isdigit():
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - count), size
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored
    end = min(size, int(last) + 1) if last else size
    if start >= size or end <= start:
        raise ValueError("range starts past the end")
    return start, end


def attachment(name: str) -> str:
    """A ``Content-Disposition`` for a download named ``name`` (RFC 6266): an ASCII fallback
    and the exact name, percent-encoded UTF-8. A header carries neither quotes, control
    characters nor anything outside Latin-1 as it is, and a directory name may hold all three.
    """
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _utf8_names(request: Request) -> None:
    """Refuse a name that is not UTF-8: it would reach the route with U+FFFD in place of its
    bad bytes, and the call would then write or read a file the client did not name. (Async:
    FastAPI would run a plain function in a thread of its own, one more hop per request.)"""
    try:
        unquote_to_bytes(request.scope.get("raw_path", b"")).decode()
        for _, value in parse_qsl(
            request.scope["query_string"].decode("latin-1"), encoding="latin-1"
        ):
            value.encode("latin-1").decode()
    except UnicodeDecodeError:
        raise files.bad_path(
            "path is not UTF-8: percent-encode the UTF-8 bytes of the name"
        ) from None


def routes(registry: ContextRegistry, settings: Settings) -> APIRouter:
    router = APIRouter(dependencies=[Depends(_utf8_names)])
    uid, gid = registry.sandbox.context_ids
    # Each thread runs on all CPUs (not the event loop's one), as the context's ids.
    become = (files.become, uid, gid)
    threads = ThreadPoolExecutor(_THREADS, "cellbox-files", placement.on_all_cpus, become)
    streams = ThreadPoolExecutor(_STREAM_THREADS, "cellbox-archives", placement.on_all_cpus, become)
    upload_limit = settings.upload_limit_mb << 20

    async def run(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(threads, fn, *args)

    def locate(context_id: str, raw: str, need_file: bool) -> tuple[int, tuple[str, ...]]:
        """The work directory's descriptor and the path's parts below it."""
        context = registry.get(context_id)
        context.touch()
        root = str(context.workspace.path)
        parts = files.file_parts(raw, root) if need_file else files.split_path(raw, root)
        try:
            return files.open_root(root), parts
        except FileNotFoundError:
            raise ContextNotFound(context_id) from None  # deleted meanwhile

    async def with_root(
        context_id: str, raw: str, need_file: bool, fn: Callable[..., T], *args: Any
    ) -> T:
        root, parts = locate(context_id, raw, need_file)
        try:
            return await run(fn, root, parts, *args)
        finally:
            os.close(root)

    async def body_chunks(request: Request) -> AsyncIterator[bytes]:
        """The request body in pieces of about a megabyte; 413 past the upload limit."""
        pending: list[bytes] = []
        held = total = 0
        async for chunk in request.stream():
            total += len(chunk)
            metrics.file_bytes("in", len(chunk))
            if total > upload_limit:
                raise FileError(413, f"upload larger than the limit ({upload_limit} bytes)")
            pending.append(chunk)
            held += len(chunk)
            if held >= _CHUNK:
                yield b"".join(pending)
                pending, held = [], 0
        if pending:
            yield b"".join(pending)

    @router.put(
        "/contexts/{context_id}/files/{path:path}",
        response_model=FileWritten,
        responses=_UPLOAD_ERRORS,
        # No body makes an empty file.
        openapi_extra={"requestBody": {"required": False, "content": _BYTES}},
        summary="Upload a file (raw body; parent directories are created, a file is replaced)",
    )
    async def upload(context_id: str, path: str, request: Request) -> Response:
        root, parts = locate(context_id, path, need_file=True)
        try:
            upload = await run(files.Upload, root, parts)
        finally:
            os.close(root)
        try:
            async for chunk in body_chunks(request):
                await run(upload.write, chunk)
            await run(upload.commit)
        finally:
            await run(upload.abort)
        return JSON({"path": files.shown(parts), "size": upload.size})

    @router.get(
        "/contexts/{context_id}/files/{path:path}",
        responses={
            200: {"content": _BYTES, "description": "The file; Content-Type from its name"},
            206: {"content": _BYTES, "description": "The part a Range header asks for"},
            **_ERRORS,
            416: {"model": Message, "description": "Range not satisfiable"},
        },
        response_class=Response,
        openapi_extra={"parameters": [_RANGE]},  # read by parse_range
        summary="Download a file (Range supported)",
    )
    @router.head("/contexts/{context_id}/files/{path:path}", include_in_schema=False)
    async def download(context_id: str, path: str, request: Request) -> Response:
        root, parts = locate(context_id, path, need_file=True)
        try:
            fd, st = await run(files.open_file, root, parts)
        finally:
            os.close(root)
        size = st.st_size
        reader = files.Download(fd)
        media = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
        headers = {"Accept-Ranges": "bytes"}
        try:
            span = parse_range(request.headers.get("range"), size)
        except ValueError:
            reader.close()
            headers["Content-Range"] = f"bytes */{size}"
            return JSON({"message": f"range not satisfiable (size {size})"}, 416, headers=headers)
        start, end = span or (0, size)
        if span is not None:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)

        async def body() -> AsyncIterator[bytes]:
            offset = start
            try:
                while offset < end:
                    chunk = await run(reader.read, offset, min(_CHUNK, end - offset))
                    if not chunk:
                        raise OSError(f"{files.shown(parts)} shrank while being sent")
                    offset += len(chunk)
                    metrics.file_bytes("out", len(chunk))
                    yield chunk
            finally:
                reader.close()

        status = 206 if span is not None else 200
        if request.method == "HEAD":  # the same headers, no body: nothing is read
            reader.close()
            return Response(status_code=status, media_type=media, headers=headers)
        return StreamingResponse(body(), status_code=status, media_type=media, headers=headers)

    @router.delete(
        "/contexts/{context_id}/files/{path:path}",
        status_code=204,
        responses=_ERRORS,
        summary="Delete a file, link or directory (with its contents)",
    )
    async def delete_file(context_id: str, path: str) -> Response:
        await with_root(context_id, path, True, tree.remove)
        return Response(status_code=204)

    @router.get(
        "/contexts/{context_id}/files",
        response_model=FileList,
        responses=_ERRORS,
        summary="List a directory of the context (links are not followed)",
    )
    async def list_files(
        context_id: str, path: str = "", recursive: bool = Query(False)
    ) -> Response:
        items = await with_root(context_id, path, False, tree.listing, recursive)
        return JSON({"items": items})

    @router.get(
        "/contexts/{context_id}/archive",
        responses={200: {"content": {"application/gzip": {}}}, **_ERRORS},
        response_class=Response,
        summary="Download a directory as tar.gz (default: the whole work directory)",
    )
    async def get_archive(context_id: str, path: str = "") -> Response:
        root, parts = locate(context_id, path, need_file=False)
        try:
            await run(lambda: os.close(files.open_dir(root, parts)))
        except BaseException:
            os.close(root)
            raise
        pipe = Pipe(asyncio.get_running_loop())

        def produce() -> None:
            try:
                archive.write_archive(root, parts, pipe.put)
                pipe.put(None)
            except Exception as exc:
                if not pipe.closed:
                    pipe.put(exc)
            finally:
                os.close(root)

        job = asyncio.get_running_loop().run_in_executor(streams, produce)

        async def body() -> AsyncIterator[bytes]:
            try:
                while (chunk := await pipe.receive()) is not None:
                    metrics.file_bytes("out", len(chunk))
                    yield chunk
            finally:
                pipe.close()
                await asyncio.shield(job)

        name = posixpath.basename(files.shown(parts)) or "workdir"
        headers = {"Content-Disposition": attachment(f"{name}.tar.gz")}
        return StreamingResponse(body(), media_type="application/gzip", headers=headers)

    @router.put(
        "/contexts/{context_id}/archive",
        response_model=ArchiveWritten,
        responses=_UPLOAD_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/gzip": {}, "application/x-tar": {}},
            }
        },
        summary="Unpack a tar or tar.gz into a directory (all members or none)",
    )
    async def put_archive(context_id: str, request: Request, path: str = "") -> Response:
        root, parts = locate(context_id, path, need_file=False)
        loop = asyncio.get_running_loop()
        pipe = Pipe(loop)
        try:
            job = loop.run_in_executor(
                streams, archive.extract_archive, root, parts, PipeReader(pipe)
            )
        except BaseException:
            os.close(root)
            raise
        job.add_done_callback(lambda _: (pipe.close(), os.close(root)))
        try:
            async for chunk in body_chunks(request):
                if job.done():
                    break  # refused already: its error is the answer
                await pipe.send(chunk)
            await pipe.send(None)
        except BaseException:
            pipe.close()
            await asyncio.gather(job, return_exceptions=True)
            raise
        unpacked = await job
        return JSON({"path": files.shown(parts), "files": unpacked.files, "size": unpacked.size})

    return router
