"""``cellbox serve`` as a child process, for the test suite and the benchmark.

A free loopback port, a token and a state directory of its own, settings as ``CELLBOX_*``
variables, the output in ``<state>/server.log``; ready once ``GET /healthz`` answers.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SERVE = [sys.executable, "-m", "cellbox.cli", "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class ServeProcess:
    """One server process; ``env`` may be changed until ``launch``."""

    def __init__(self, settings: dict[str, Any] | None = None, prefix: str = "cellbox-") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(24)
        self.state_dir = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.state_dir, 0o755)
        self.env = {
            **os.environ,
            "CELLBOX_API_KEY": self.token,
            "CELLBOX_STATE_DIR": str(self.state_dir),
            "CELLBOX_HOST": "127.0.0.1",
            "CELLBOX_PORT": str(self.port),
        }
        for name, value in (settings or {}).items():
            self.env["CELLBOX_" + name.upper()] = str(value)
        self.process: subprocess.Popen[bytes] | None = None
        self._own_session = False

    @property
    def log_path(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def launch(
        self,
        argv: list[str] = SERVE,
        *,
        cwd: Path | None = None,
        own_session: bool = False,
        timeout: float = 60.0,
    ) -> float:
        """Run ``argv`` (which ends in ``cellbox serve``), wait until it answers; seconds.

        ``own_session``: in a session of its own, which ``stop`` kills whole.
        """
        self._own_session = own_session
        started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv,
                env=self.env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=own_session,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"server exited with code {code}: {self.log_tail(20)}")
            if _healthy(self.env["CELLBOX_HOST"], self.port):
                return time.perf_counter() - started
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start within {timeout} s: {self.log_tail(20)}")

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.read_log().splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGINT, grace: float = 30.0) -> int | None:
        """``sig``, then SIGKILL after ``grace`` seconds; the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_session:
            # anything the server left in its session (workers, sandboxes) goes too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return process.returncode

    def cleanup(self) -> None:
        # a server killed without its shutdown leaves its disk quota volume mounted there
        subprocess.run(
            ["umount", "-l", str(self.state_dir / "contexts")], capture_output=True, check=False
        )
        shutil.rmtree(self.state_dir, ignore_errors=True)
