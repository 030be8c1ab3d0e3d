"""TypeScript/JavaScript contexts: a Node worker holding one persistent V8 context."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cellbox.node import node_binary
from cellbox.runtimes.base import Runtime

WORKER = Path(__file__).resolve().parent.parent / "workers" / "ts" / "main.mjs"


@dataclass(frozen=True)
class TypeScriptRuntime(Runtime):
    def argv(self, fd: int, memory_limit_bytes: int) -> list[str]:
        # V8's heap cap sits below the context's hard memory limit, leaving room for
        # buffers, typed arrays and the runtime itself.
        heap_mb = max(64, (memory_limit_bytes >> 20) * 3 // 4)
        return [
            node_binary(),
            f"--max-old-space-size={heap_mb}",
            str(WORKER),
            "--fd",
            str(fd),
        ]


TYPESCRIPT = TypeScriptRuntime(
    name="typescript",
    aliases=frozenset({"typescript", "ts", "javascript", "js", "bun", "node"}),
    interrupted_error="Interrupted",
)
