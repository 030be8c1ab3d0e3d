"""Which cellbox server ``cellbox mcp`` uses: the configured one, or one of its own."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cellbox.client import AsyncClient, CellboxError
from cellbox.client.core import URL_VAR
from cellbox.serve_process import SERVE, ServeProcess

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0


@contextmanager
def backend(url: str | None, api_key: str | None) -> Iterator[AsyncClient]:
    """A client of the configured server (``--url`` / ``CELLBOX_URL``), else of an own server."""
    # A host stops a stdio server with SIGTERM: unwind, so an own server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if url or os.environ.get(URL_VAR):
        yield AsyncClient(url, api_key)
        return
    with own_server() as (own_url, token):
        yield AsyncClient(own_url, token)


@contextmanager
def own_server() -> Iterator[tuple[str, str]]:
    """``cellbox serve`` on a free loopback port, with its own token and state directory.

    Its log goes to ``<state>/server.log``, not to our stdout, which the stdio transport owns.
    """
    log_level = os.environ.get("CELLBOX_LOG_LEVEL", "warning")
    server = ServeProcess({"log_level": log_level}, prefix="cellbox-mcp-")
    # setpriv --pdeathsig: the server is told to stop even if this process is killed outright.
    argv = ["setpriv", "--pdeathsig", "TERM", *SERVE] if shutil.which("setpriv") else SERVE
    try:
        try:
            server.launch(argv, own_session=True, timeout=START_TIMEOUT_S)
        except RuntimeError as exc:
            raise CellboxError(f"could not start a cellbox server: {exc}") from exc
        print(f"cellbox mcp: started a cellbox server at {server.url}", file=sys.stderr, flush=True)
        yield server.url, server.token
    finally:
        # Hosts give a stdio server about two seconds to exit before SIGTERM, then SIGKILL:
        # finish stopping the server even if asked to quit meanwhile.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.stop(grace=STOP_GRACE_S)
        server.cleanup()
