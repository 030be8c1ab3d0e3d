"""matplotlib's font list, built once in the background and bound read-only into contexts.

A fresh private /tmp would otherwise make every context's first ``import matplotlib``
rebuild it (about a second here).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cellbox.procfs import read_text
from cellbox.sandbox.policy import SYSTEM_PATH

# Builds in a scratch directory, then swaps it in whole: readers never see half a cache.
_BUILD = (
    "import os, shutil, sys\n"
    "build, final, version = sys.argv[1:4]\n"
    "import matplotlib.font_manager\n"
    "open(os.path.join(build, 'version'), 'w').write(version)\n"
    "for name in os.listdir(build):\n"
    "    os.chmod(os.path.join(build, name), 0o644)\n"
    "os.chmod(build, 0o755)\n"
    "old = build + '.old'\n"
    "try:\n"
    "    os.rename(final, old)\n"
    "except OSError:\n"
    "    pass\n"
    "os.rename(build, final)\n"
    "shutil.rmtree(old, ignore_errors=True)\n"
)


class FontCache:
    """The cache directory below ``cache``; ``start`` builds it when it is missing or stale."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.dir = cache / "matplotlib"
        self._builder: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if importlib.util.find_spec("matplotlib") is None:
            return
        try:
            version = importlib.metadata.version("matplotlib")
        except importlib.metadata.PackageNotFoundError:
            return
        with contextlib.suppress(OSError):
            if read_text(self.dir / "version").strip() == version and any(
                self.dir.glob("fontlist-*.json")
            ):
                return
        with contextlib.suppress(OSError):
            build = tempfile.mkdtemp(prefix=".matplotlib-", dir=self.cache)
            self._builder = subprocess.Popen(
                [sys.executable, "-c", _BUILD, build, str(self.dir), version],
                env={"PATH": SYSTEM_PATH, "MPLCONFIGDIR": build, "HOME": build},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
            )

    def files(self) -> list[str]:
        """The cache's files now (a rebuild may swap the directory at any time)."""
        try:
            return [n for n in os.listdir(self.dir) if n.endswith(".json")]
        except OSError:
            return []

    def close(self) -> None:
        if self._builder is not None and self._builder.poll() is None:
            with contextlib.suppress(Exception):
                self._builder.kill()
                self._builder.wait(timeout=5)
