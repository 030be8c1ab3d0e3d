"""A 413 reaches clients that are still sending the body (httpx's async client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from tests.conftest import Client, Server


def _post_too_large(server: Server, chunked: bool) -> httpx.Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield b"a" * (1 << 20)

    async def post() -> httpx.Response:
        headers = {"Authorization": f"Bearer {server.token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            if chunked:
                return await client.post("/execute", content=chunks())
            return await client.post("/execute", json={"code": "x = '" + "a" * (11 << 20) + "'"})

    return asyncio.run(post())


def test_async_client_gets_the_413_of_a_declared_length(server: Server, client: Client):
    response = _post_too_large(server, chunked=False)
    assert response.status_code == 413
    assert "too large" in response.json()["message"]
    assert client.run("'still fine'")["items"][0]["text"] == "'still fine'"


def test_async_client_gets_the_413_of_a_chunked_body(server: Server):
    response = _post_too_large(server, chunked=True)
    assert response.status_code == 413
    assert "too large" in response.json()["message"]
