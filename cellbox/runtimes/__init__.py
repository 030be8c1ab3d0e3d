"""The languages cellbox runs: how each names itself and how its worker is started."""

from __future__ import annotations

from cellbox.runtimes.base import Runtime
from cellbox.runtimes.python import PYTHON
from cellbox.runtimes.typescript import TYPESCRIPT

RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (PYTHON, TYPESCRIPT)}
_BY_ALIAS = {alias: runtime for runtime in RUNTIMES.values() for alias in runtime.aliases}
LANGUAGE_NAMES = sorted(_BY_ALIAS)


def resolve(language: str) -> Runtime | None:
    """The runtime a (case-insensitive) language name or alias stands for."""
    return _BY_ALIAS.get(language.strip().lower())


__all__ = ["LANGUAGE_NAMES", "RUNTIMES", "Runtime", "resolve"]
