"""The playground's page and assets over HTTP: open without a token, strict headers."""

from __future__ import annotations

import re

import httpx

from cellbox.api import playground
from cellbox.api.playground import STATIC, load_assets


def test_page_needs_no_token_and_carries_a_strict_csp(server):
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp and "http" not in csp and "*" not in csp
    nonce = re.search(r"'nonce-([^']+)'", directives["style-src"]).group(1)
    assert f'content="{nonce}"' in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    # A fresh nonce for every answer.
    assert httpx.get(server.url + "/").headers["content-security-policy"] != csp


def test_assets_are_open_and_nothing_else_is(server):
    script = httpx.get(server.url + "/playground/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    etag = script.headers["etag"]
    again = httpx.get(server.url + "/playground/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert httpx.get(server.url + "/playground/vendor/codemirror.js").status_code == 200
    assert httpx.get(server.url + "/playground/vendor/LICENSES.txt").status_code == 200
    missing = httpx.get(server.url + "/playground/nope.js")
    assert missing.status_code == 404 and missing.json()["message"]
    for path in ("/playground/../api-token", "/playground/%2e%2e/%2e%2e/pyproject.toml"):
        assert httpx.get(server.url + path).status_code in (401, 404)
    # The API itself still wants the token.
    assert httpx.get(server.url + "/contexts").status_code == 401
    assert httpx.get(server.url + "/playgroundx").status_code == 401


def test_output_frame_is_sandboxed_even_when_opened_alone(server):
    response = httpx.get(server.url + "/playground/frame.html")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-scripts;")
    assert "allow-same-origin" not in csp
    assert "connect-src" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'self'" in csp


def test_playground_is_left_out_of_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/playground") for p in paths)


def test_every_static_file_is_an_asset_and_the_page_is_templated():
    assets = load_assets()
    on_disk = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert set(assets) == on_disk
    assert b"__STYLE_NONCE__" in assets["index.html"].body
    paths = {route.path for route in playground.routes(assets).routes}
    assert paths == {"/", "/playground/{name:path}"}
