"""``packages`` at ``POST /contexts``: installed by the new context itself, before the 201.

The install runs as an execution in the context's own worker (its user, limits, network
policy), through the same commands user code would type; the execution leaves no name
behind, is not in the cell history (``In``, ``_i1``) and the context's execution counter
starts at 1 afterwards. npm installs into the work directory whatever the context's
``cwd`` (``NODE_PATH`` names its ``node_modules``, see
:mod:`cellbox.packages.layout`), so the packages survive ``restart`` and a ``cwd`` that is
read-only or shared with nothing persistent works too. A Python package that replaces a
shared one gets a fresh worker before the context is handed out: the one that installed it
(forked from the zygote) has the shared version imported already.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from cellbox import metrics
from cellbox.packages.layout import shadows_shared

if TYPE_CHECKING:
    from cellbox.sessions.context import Context
    from cellbox.sessions.registry import ContextRegistry

INSTALL_TIMEOUT_MS = 600_000
LAST_LINES = 20


class PackageInstallError(ValueError):
    """The installer failed; the message is its last lines."""


def install_code(language: str, packages: list[str], workdir: str) -> str:
    """The code that installs ``packages`` in a context of ``language`` whose work
    directory is ``workdir``."""
    specs = json.dumps(packages)  # a valid literal in both languages
    where = json.dumps(workdir)
    if language == "python":
        return (
            '__import__("cellbox.packages.pip_command", fromlist=["_"])'
            f".install_for_creation({specs})"
        )
    return (
        "void (() => {\n"
        '  const r = require("node:child_process").spawnSync("npm", '
        f'["install", "--prefix", {where}, ...{specs}], '
        f'{{ cwd: {where}, encoding: "utf8", maxBuffer: 64 << 20 }});\n'
        "  if (r.status !== 0) {\n"
        '    const out = `${r.stdout || ""}${r.stderr || ""}`.trim() || String(r.error);\n'
        f'    throw new Error(out.split("\\n").slice(-{LAST_LINES}).join("\\n"));\n'
        "  }\n"
        "})();"
    )


async def install(registry: ContextRegistry, context: Context, packages: list[str]) -> None:
    """Install ``packages`` in ``context``; on failure delete it and raise the installer's lines."""
    code = install_code(context.runtime.name, packages, str(context.workspace.path))
    execution = registry.execute(context, code, {}, INSTALL_TIMEOUT_MS, numbered=False)
    error: dict[str, str] | None = None
    await execution.started
    async for batch in execution.batches():
        for event in batch:
            if event["type"] == "error":
                error = event
    await execution.task
    context.execution_count = 0
    metrics.package_installed(context.runtime.name, error is None)
    if error is not None:
        await registry.delete(context.id)
        message = error.get("value") or error.get("data") or "the install failed"
        raise PackageInstallError("\n".join(str(message).splitlines()[-LAST_LINES:]))
    if context.runtime.name == "python" and await asyncio.to_thread(
        shadows_shared, context.workspace.path
    ):
        try:
            async with context.lock:
                if context.worker is not None:
                    await context.discard_worker(context.worker)
                await context.ready_worker()  # not forked: its imports are the context's
        except BaseException:
            await registry.delete(context.id)
            raise
