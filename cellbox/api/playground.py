"""The playground: a static page at ``/`` and its assets under ``/playground/``.

The files hold no data and need no token (the page asks for it and keeps it in the browser's
session storage). They are read once at start, so a request can only ever name one of them.
"""

from __future__ import annotations

import hashlib
import mimetypes
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from cellbox.api.responses import JSON

STATIC = Path(__file__).resolve().parent.parent / "playground" / "static"
ASSET_PREFIX = "/playground/"

PAGE = "index.html"
# Each answer of the page gets a fresh nonce, put where the page reads it: the editor's
# stylesheet is a <style> element that must carry it.
NONCE_SLOT = b"__STYLE_NONCE__"


def page_csp(nonce: str) -> str:
    """The page may load only its own scripts, styles and API; images arrive inline (outputs
    are base64); the markup that code produces goes into frames of this origin."""
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )


# The frame that shows a cell's HTML: always sandboxed (an opaque origin, so no access to the
# page, its storage or the token, even when opened on its own); its scripts may run but cannot
# fetch, send forms or load anything from outside.
FRAME_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'self' 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"
)
_POLICIES = {"frame.html": FRAME_CSP}
_COMMON_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    headers: dict[str, str]


def load_assets(root: Path = STATIC) -> dict[str, Asset]:
    """Every file under ``root`` by its relative path, with the headers it is served with."""
    assets = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        body = path.read_bytes()
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type.endswith("javascript"):
            media_type += "; charset=utf-8"
        headers = {**_COMMON_HEADERS, "ETag": '"' + hashlib.sha256(body).hexdigest()[:32] + '"'}
        if name in _POLICIES:
            headers["Content-Security-Policy"] = _POLICIES[name]
        assets[name] = Asset(body, media_type, headers)
    return assets


def routes(assets: dict[str, Asset] | None = None) -> APIRouter:
    """Routes for ``/`` and ``/playground/<asset>``, left out of the OpenAPI document."""
    files = dict(load_assets() if assets is None else assets)
    template = files.pop(PAGE)
    router = APIRouter(include_in_schema=False)

    def serve(name: str, request: Request) -> Response:
        asset = files.get(name)
        if asset is None:
            return JSON({"message": f"no such file: {name}"}, status_code=404)
        if request.headers.get("if-none-match") == asset.headers["ETag"]:
            return Response(status_code=304, headers=asset.headers)
        return Response(asset.body, media_type=asset.media_type, headers=asset.headers)

    @router.get("/")
    async def page() -> Response:
        nonce = secrets.token_urlsafe(18)
        headers = {
            **_COMMON_HEADERS,
            "Cache-Control": "no-store",
            "Content-Security-Policy": page_csp(nonce),
        }
        body = template.body.replace(NONCE_SLOT, nonce.encode())
        return Response(body, media_type=template.media_type, headers=headers)

    @router.get(ASSET_PREFIX + "{name:path}")
    async def asset(name: str, request: Request) -> Response:
        return serve(name, request)

    return router
