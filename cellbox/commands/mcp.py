"""``cellbox mcp``: the MCP server, over stdio or streamable HTTP."""

from __future__ import annotations

import argparse

from cellbox.commands import run


def register(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "mcp",
        parents=[parent],
        help="serve cellbox's tools over MCP",
        description="An MCP server whose tools run code in cellbox contexts. It uses the cellbox "
        "server at --url / CELLBOX_URL; when none is configured it starts its own (on a free "
        "loopback port, with its own token) for as long as it runs.",
    )
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP transport: address")
    parser.add_argument("--port", type=int, default=8765, help="HTTP transport: port")
    parser.set_defaults(handler=lambda args: run(serve_mcp, args))


def serve_mcp(args: argparse.Namespace) -> None:
    from cellbox.mcp_backend import backend
    from cellbox.mcp_server import build_server

    with backend(args.url, args.api_key) as client:
        server = build_server(client)
        if args.transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=args.host, port=args.port)
