"""The baseline: ipykernel driven by jupyter_client on the same machine, in the same run.

The kernel runs the venv's own interpreter (an explicit kernel spec written to a
temporary directory: ``[sys.executable, "-m", "ipykernel_launcher", "-f", ...]``) with
the environment this benchmark was started with, as a default user would have it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

KERNEL_NAME = "cellbox-bench-python"


class KernelError(RuntimeError):
    """The kernel answered with an error or did not answer in time."""


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise KernelError("kernel did not answer in time")
    return left


class Kernel:
    """One running ipykernel and a blocking client connected to it."""

    def __init__(self, manager: KernelManager) -> None:
        self.manager = manager
        self.client = manager.client()

    @property
    def pid(self) -> int:
        return self.manager.provisioner.process.pid

    def execute(self, code: str, timeout: float = 60.0) -> str | None:
        """Run ``code``; wait for both the execute_reply and the idle status.

        Returns the ``text/plain`` of the execute_result, or None. Raises KernelError
        when the cell failed.
        """
        client = self.client
        msg_id = client.execute(code, store_history=True)
        deadline = time.monotonic() + timeout
        # Both messages queue up in their sockets, so waiting for one and then the other
        # takes as long as waiting for whichever comes last.
        while True:
            msg = client.get_shell_msg(timeout=_remaining(deadline))
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg["content"]
                break
        result = None
        error = None
        while True:
            msg = client.get_iopub_msg(timeout=_remaining(deadline))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            content = msg["content"]
            if kind == "execute_result":
                result = content["data"].get("text/plain")
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if error is not None or reply.get("status") != "ok":
            raise KernelError(error or f"execute_reply status {reply.get('status')}")
        return result

    def stop(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.manager.shutdown_kernel(now=True)


class Baseline:
    """Starts ipykernel kernels from an explicit kernel spec pointing at this interpreter."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="cellbox-bench-kernels-")
        spec_dir = Path(self._dir.name) / KERNEL_NAME
        spec_dir.mkdir()
        self.argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec = {"argv": self.argv, "display_name": "bench python", "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        self.log_path = Path(self._dir.name) / "kernels.log"
        self._specs = KernelSpecManager(kernel_dirs=[self._dir.name], ensure_native_kernel=False)

    def start(self, timeout: float = 60.0) -> tuple[Kernel, int]:
        """A ready kernel and the nanoseconds from start_kernel() to ready."""
        manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=self._specs)
        t0 = time.perf_counter_ns()
        with open(self.log_path, "ab") as log:
            manager.start_kernel(stdout=log, stderr=log)
        kernel = Kernel(manager)
        kernel.client.start_channels()
        try:
            kernel.client.wait_for_ready(timeout=timeout)
        except Exception:
            kernel.stop()
            raise
        return kernel, time.perf_counter_ns() - t0

    def close(self) -> None:
        self._dir.cleanup()
