"""The ``cellbox`` command: ``cellbox serve``, and the client commands of ``cellbox.commands``."""

from __future__ import annotations

import argparse
import logging
import sys

from cellbox import __version__, config
from cellbox.auth import load_token
from cellbox.commands import register as register_client_commands

log = logging.getLogger("cellbox")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellbox", description="cellbox code interpreter")
    parser.add_argument("--version", action="version", version=f"cellbox {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    config.add_arguments(serve)
    register_client_commands(commands)
    return parser


def serve(settings: config.Settings) -> None:
    """Run the server until SIGINT/SIGTERM (graceful: see ``cellbox.graceful``); every
    context's processes die with it."""
    import uvicorn

    from cellbox.api.app import create_app
    from cellbox.api.http_protocol import HttpProtocol
    from cellbox.graceful import GracefulServer
    from cellbox.sandbox.sandbox import StateDirInUse

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = load_token(settings.token_file)
    if token.source == "environment":
        log.info("API token: taken from CELLBOX_API_KEY")
    else:
        verb = "generated and stored in" if token.created else "read from"
        print(
            f"cellbox: API token {verb} {token.source} (mode 0600):\n  {token.value}\n"
            "  send it as 'Authorization: Bearer <token>'",
            file=sys.stderr,
            flush=True,
        )
    try:
        app = create_app(settings, token)
    except StateDirInUse as exc:
        raise SystemExit(f"cellbox: {exc}") from None
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=HttpProtocol,  # uvicorn's httptools protocol, one send per JSON answer
        log_level=settings.log_level.lower(),
        access_log=settings.log_level.lower() == "debug",
        timeout_keep_alive=settings.keep_alive_s,
        proxy_headers=False,  # no X-Forwarded-* parsing per request: cellbox reads no client address
        server_header=False,  # no software banner; one header less for every client to parse
        timeout_graceful_shutdown=5,  # after the drain: only final answers are in flight
    )
    GracefulServer(
        config, drain=app.state.drain, hurry=app.state.hurry, listening=app.state.listening
    ).run()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        serve(config.load(args))
    else:
        sys.exit(args.handler(args))


if __name__ == "__main__":
    main()
