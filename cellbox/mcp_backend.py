"""Which cellbox server ``cellbox mcp`` uses: the configured one, or one of its own."""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cellbox.client import AsyncClient, CellboxError, Client, ConnectionFailed
from cellbox.client.core import KEY_VAR, STATE_DIR_VAR, URL_VAR

START_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextmanager
def own_server() -> Iterator[tuple[str, str]]:
    """Run ``cellbox serve`` on a free loopback port, with its own token and state directory."""
    port, token = _free_port(), secrets.token_urlsafe(32)
    state_dir = Path(tempfile.mkdtemp(prefix="cellbox-mcp-"))
    state_dir.chmod(0o755)  # the sandbox user reaches its work directory below it
    env = {
        **os.environ,
        KEY_VAR: token,
        STATE_DIR_VAR: str(state_dir),
        "CELLBOX_HOST": "127.0.0.1",
        "CELLBOX_PORT": str(port),
        "CELLBOX_LOG_LEVEL": os.environ.get("CELLBOX_LOG_LEVEL", "warning"),
    }
    # Its output goes to our stderr: on the stdio transport, stdout carries the protocol.
    process = subprocess.Popen(
        [sys.executable, "-m", "cellbox.cli", "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),
        stderr=sys.stderr.fileno(),
        preexec_fn=_die_with_parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, url, token)
        print(f"cellbox mcp: started a cellbox server at {url}", file=sys.stderr, flush=True)
        yield url, token
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(state_dir, ignore_errors=True)


def _wait_until_up(process: subprocess.Popen[bytes], url: str, token: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with Client(url, token, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise CellboxError(f"the cellbox server it started exited ({process.returncode})")
            try:
                if client.health():
                    return
            except ConnectionFailed:
                time.sleep(0.1)
    raise CellboxError(f"the cellbox server it started did not answer within {START_TIMEOUT_S} s")
