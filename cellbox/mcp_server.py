"""``cellbox mcp``: cellbox's contexts as MCP tools, on the official ``mcp`` SDK.

The tools speak to a cellbox server through :class:`cellbox.client.AsyncClient`. Errors in the
user's code are tool results marked ``isError``; API errors (unknown context, bad path) are too,
carrying the server's message, so a model can read them and correct itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import io
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import orjson
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from cellbox import __version__
from cellbox.client import AsyncClient, CellboxError, ContextNotFound, Execution, FileInfo, Item
from cellbox.client.models import is_placeholder

# Files larger than this are not returned inline (a model's context is small); say so instead.
MAX_INLINE_BYTES = 4 << 20
# Longer output is cut in the middle (its start and end kept), so one print cannot fill it.
MAX_TEXT_CHARS = 40_000
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}

INSTRUCTIONS = """\
cellbox runs Python and TypeScript code in persistent, sandboxed REPL contexts.
Variables, imports, functions and files persist within a context between run_code calls.
Without context_id, run_code uses this server's default context for its language, so state
carries over there too (if it is gone, a new one is made and the result says so). Create
separate contexts with create_context to keep work apart.
Files: each context has its own work directory (the code's current directory); use
upload_file / list_files / download_file to move files in and out.
"""

ContextId = Annotated[
    str | None,
    Field(
        description="Context to use (from create_context or an earlier result); omit for "
        "the default context of the language."
    ),
]
Path = Annotated[str, Field(description="Path relative to the context's work directory.")]
Language = Annotated[
    Literal["python", "typescript"],
    Field(description="Without context_id: use the default context of this language."),
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _api_errors(tool: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Report cellbox's errors (their message) as tool errors the model can read."""

    @functools.wraps(tool)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await tool(*args, **kwargs)
        except CellboxError as exc:
            raise ToolError(str(exc)) from exc

    return wrapper


class Tools:
    """The tools, bound to one client; keeps the session's default context per language."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.defaults: dict[str, str] = {}
        # Hosts send tool calls in parallel: the first calls of a session must not each make
        # a default context of their own (state would be split between them, and they leak).
        self._defaults_lock = asyncio.Lock()

    async def context_for(self, context_id: str | None, language: str) -> str:
        if context_id:
            return context_id
        async with self._defaults_lock:
            if language not in self.defaults:
                self.defaults[language] = (await self.client.contexts.create(language)).id
            return self.defaults[language]

    async def in_context(
        self, context_id: str | None, language: str, action: Callable[[str], Awaitable[T]]
    ) -> tuple[T, str]:
        """``action`` on the given context, else on the default one, and a note for the model:
        a default context that is gone (deleted, idle too long, lost in a server restart) is
        replaced, and the note says why and that what it held is lost."""
        context = await self.context_for(context_id, language)
        try:
            return await action(context), ""
        except ContextNotFound as exc:
            if context_id:
                raise
            why = exc.message.partition(": ")[2] or "it was deleted"  # the server's reason
        async with self._defaults_lock:
            if self.defaults.get(language) == context:  # not replaced by a parallel call yet
                del self.defaults[language]
        fresh = await self.context_for(None, language)
        note = (
            f"note: the default {language} context {context} was gone ({why}), so this ran "
            f"in a new one, {fresh}: variables, imports and files from before are lost\n"
        )
        try:
            return await action(fresh), note
        except CellboxError as exc:
            raise ToolError(note + str(exc)) from exc

    async def run_code(
        self,
        code: Annotated[str, Field(description="The source to run, as one cell.")],
        language: Annotated[
            Literal["python", "typescript"],
            Field(
                description="python, or typescript (JavaScript runs as TypeScript); picks the "
                "default context. With context_id, the context's own language is used."
            ),
        ] = "python",
        context_id: ContextId = None,
        timeout_s: Annotated[
            float, Field(description="Seconds before the code is interrupted.", gt=0, le=600)
        ] = 60,
    ) -> CallToolResult:
        execution, note = await self.in_context(
            context_id,
            language,
            lambda context: self.client.execute(code, context=context, timeout=timeout_s),
        )
        return execution_result(execution, note)

    async def create_context(
        self,
        language: Annotated[
            Literal["python", "typescript"], Field(description="The context's language.")
        ] = "python",
        packages: Annotated[
            list[str] | None,
            Field(
                description="PyPI requirements (Python) or npm specs (TypeScript) installed "
                "before the context is handed out; a failed install is an error."
            ),
        ] = None,
        network: Annotated[
            Literal["public", "off"] | None,
            Field(description="off: no network for this context; default: the server's."),
        ] = None,
    ) -> str:
        context = await self.client.contexts.create(language, network=network, packages=packages)
        return _json(context.info.to_json())

    async def list_contexts(self) -> str:
        return _json([context.info.to_json() for context in await self.client.contexts.list()])

    async def delete_context(
        self, context_id: Annotated[str, Field(description="The context to delete.")]
    ) -> str:
        await self.client.contexts.delete(context_id)
        self.defaults = {k: v for k, v in self.defaults.items() if v != context_id}
        return f"deleted {context_id}"

    async def restart_context(
        self, context_id: Annotated[str, Field(description="The context to restart.")]
    ) -> str:
        return _json((await self.client.contexts.restart(context_id)).to_json())

    async def upload_file(
        self,
        path: Path,
        content: Annotated[str, Field(description="The file's content.")],
        encoding: Annotated[
            Literal["text", "base64"],
            Field(description="text (written as UTF-8) or base64 (for binary files)."),
        ] = "text",
        context_id: ContextId = None,
        language: Language = "python",
    ) -> str:
        data = file_content(content, encoding)

        async def upload(context: str) -> str:
            uploaded = await (await self.client.contexts.get(context)).files.upload(path, data)
            return f"wrote {uploaded.path} ({uploaded.size} bytes) in context {context}"

        text, note = await self.in_context(context_id, language, upload)
        return note + text

    async def download_file(
        self, path: Path, context_id: ContextId = None, language: Language = "python"
    ) -> CallToolResult:
        async def download(context: str) -> bytes:
            buffer = _CappedBuffer(path)
            await (await self.client.contexts.get(context)).files.download(path, buffer)
            return buffer.getvalue()

        data, note = await self.in_context(context_id, language, download)
        return file_result(path, data, note)

    async def list_files(
        self,
        path: Annotated[str, Field(description="Directory to list; empty for the root.")] = "",
        recursive: Annotated[bool, Field(description="Include subdirectories' contents.")] = False,
        context_id: ContextId = None,
        language: Language = "python",
    ) -> str:
        async def listing(context: str) -> list[FileInfo]:
            files = (await self.client.contexts.get(context)).files
            return await files.list(path, recursive=recursive)

        entries, note = await self.in_context(context_id, language, listing)
        lines = [f"{entry.type:<7} {entry.size:>10}  {entry.path}" for entry in entries]
        return note + (clipped("\n".join(lines)) or "(empty)")


DESCRIPTIONS = {
    "run_code": "Run code in a persistent context and return its output: printed text, the "
    "value of the last expression, rich results (PNG images are returned as images; "
    "matplotlib figures are captured automatically) and the error with its traceback. "
    "State (variables, imports, files) persists in the context between calls. Python has "
    "numpy, pandas, matplotlib and pillow; `%pip install x` adds packages. Output longer than "
    f"{MAX_TEXT_CHARS} characters is cut in the middle; standard input is not available.",
    "create_context": "Create a new, empty context (its own process, state and work "
    "directory), optionally with packages installed and without network, and return its id, "
    "language and working directory.",
    "list_contexts": "List the live contexts with their id, language and working directory.",
    "delete_context": "Delete a context: its processes, state and files are gone.",
    "restart_context": "Restart a context's process: variables and imports are cleared, files "
    "in its work directory are kept. Use it when the context is stuck or broken.",
    "upload_file": "Write a file into a context's work directory (parent directories are "
    "created, an existing file is replaced); the code sees it at once.",
    "download_file": "Read a file from a context's work directory: text is returned as text "
    f"(cut in the middle past {MAX_TEXT_CHARS} characters), PNG/JPEG/GIF/WebP as an image, "
    "other binary files as base64 (at most 4 MiB).",
    "list_files": "List a directory in a context's work directory: type, size and path.",
}
READ_ONLY = {"list_contexts", "download_file", "list_files"}


def build_server(client: AsyncClient) -> MCPServer:
    tools = Tools(client)
    # WARNING: the SDK's INFO level would log every HTTP request of the client to stderr.
    server = MCPServer(
        "cellbox", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    for name, description in DESCRIPTIONS.items():
        annotations = ToolAnnotations(
            read_only_hint=name in READ_ONLY,
            destructive_hint=name in {"delete_context", "restart_context"},
        )
        server.add_tool(
            _api_errors(getattr(tools, name)),
            name=name,
            description=description,
            annotations=annotations,
        )
    return server


def execution_result(execution: Execution, note: str = "") -> CallToolResult:
    """Text of the whole execution, plus an image block per PNG or JPEG item."""
    parts = [f"{note}[context {execution.context_id}, execution {execution.execution_count}]"]
    if execution.logs.stdout:
        parts.append("stdout:\n" + clipped(execution.stdout.rstrip("\n")))
    if execution.logs.stderr:
        parts.append("stderr:\n" + clipped(execution.stderr.rstrip("\n")))
    images: list[ContentBlock] = []
    for item in execution.results:
        label = "result" if item.is_primary else "output"
        if item.png is not None or item.jpeg is not None:
            mime, data = (
                ("image/png", item.png) if item.png is not None else ("image/jpeg", item.jpeg)
            )
            images.append(ImageContent(type="image", data=_b64(data), mime_type=mime))
            label += f" ({mime} attached)"
        text = item_text(item)
        if text is not None:
            parts.append(f"{label}: {clipped(text)}")
    if execution.error is not None:
        error = execution.error
        parts.append(f"error: {error}\n{clipped(error.traceback)}".rstrip("\n"))
    text = TextContent(type="text", text="\n".join(parts))
    return CallToolResult(content=[text, *images], is_error=execution.error is not None)


def item_text(item: Item) -> str | None:
    """What a model reads of an item: its readable text, unless that is only the default
    ``<… object>`` repr and the item has an HTML or SVG form that says more."""
    text = item.readable
    if text is not None and not is_placeholder(text):
        return text
    for form in (item.html, item.svg):
        if form is not None:
            return form
    return text


def file_content(content: str, encoding: str) -> bytes:
    """The bytes an upload_file call means; base64 is checked, never silently cut short."""
    if encoding == "text":
        return content.encode()
    try:
        # Line breaks and spaces are how base64 is often wrapped; anything else is an error.
        return base64.b64decode("".join(content.split()), validate=True)
    except binascii.Error as exc:
        raise ToolError(
            f"content is not valid base64 ({exc}): send the file's bytes base64-encoded, or "
            'use encoding "text" for text'
        ) from exc


def clipped(text: str) -> str:
    """``text``, or its start and end with what was cut in between said."""
    if len(text) <= MAX_TEXT_CHARS:
        return text
    half = MAX_TEXT_CHARS // 2
    return (
        f"{text[:half]}\n[… {len(text) - 2 * half} characters cut here; to see them, write the "
        f"output to a file and read parts of it …]\n{text[-half:]}"
    )


def file_result(path: str, data: bytes, note: str = "") -> CallToolResult:
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if mime in IMAGE_TYPES:
        about = TextContent(type="text", text=f"{note}{path}: {mime}, {len(data)} bytes")
        return CallToolResult(
            content=[about, ImageContent(type="image", data=_b64(data), mime_type=mime)]
        )
    try:
        text = clipped(data.decode("utf-8"))
    except UnicodeDecodeError:
        text = f"{path}: {mime}, {len(data)} bytes, base64:\n{_b64(data)}"
    return CallToolResult(content=[TextContent(type="text", text=note + text)])


class _CappedBuffer(io.BytesIO):
    """Collects a download, and stops it once it grows past what can be returned inline."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > MAX_INLINE_BYTES:
            raise ToolError(
                f"{self.path} is larger than {MAX_INLINE_BYTES} bytes, too large to return "
                "inline; process it with run_code instead (e.g. read a part of it)"
            )
        return super().write(data)


def _b64(data: bytes | None) -> str:
    return base64.b64encode(data or b"").decode("ascii")


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
