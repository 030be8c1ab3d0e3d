"""The trusted wheel cache: what one context installed, the next installs without a download.

Contexts never write it. The server watches the site directories of live Python contexts
(names only: ``<name>-<version>.dist-info``); for each new release it downloads that
release's wheel itself, from the registry the host's pip is configured for, with ``pip
download --no-deps --only-binary=:all:`` (no package code runs, the index's hashes are
checked) and moves it into the cache, owned by the server, mode 0644. Every sandbox
mounts the cache read-only and uv takes it as an extra ``--find-links`` source. A context
can only make the server fetch a public release it names; what it downloads or builds
itself never reaches another context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from cellbox.packages.layout import site_listing
from cellbox.packages.pip_args import normalize, releases
from cellbox.placement import placement

log = logging.getLogger("cellbox.packages")

SCAN_PERIOD_S = 2.0
MAX_WHEEL_BYTES = 64 << 20
MAX_TOTAL_BYTES = 4 << 30
MAX_PER_SCAN = 8
DOWNLOAD_TIMEOUT_S = 120.0
_WHEEL = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.]*)-([^-]+)-.+\.whl$")


def wheel_release(filename: str) -> tuple[str, str] | None:
    match = _WHEEL.match(filename)
    return (normalize(match.group(1)), match.group(2)) if match else None


class WheelCache:
    """Fills ``path`` with the wheels of releases that live contexts installed.

    Only code installs packages, so the site directories are looked at ``SCAN_PERIOD_S``
    after an execution ended (:meth:`code_ran`), not while nothing runs: an idle server
    does no rounds at all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen_mtime: dict[Path, int] = {}
        self._failed: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ran = asyncio.Event()

    def code_ran(self) -> None:
        """An execution ended: its context may have installed something."""
        self._ran.set()

    def cached(self) -> set[tuple[str, str]]:
        return {r for name in os.listdir(self.path) if (r := wheel_release(name)) is not None}

    def start(self, workdirs: Callable[[], Iterable[Path]]) -> None:
        """Watch the site directories of ``workdirs()`` (called each round) in the background."""
        self._task = asyncio.create_task(self._watch(workdirs))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self, workdirs: Callable[[], Iterable[Path]]) -> None:
        while True:
            await self._ran.wait()
            await asyncio.sleep(SCAN_PERIOD_S)  # (what ends meanwhile joins this round)
            self._ran.clear()
            try:
                await self.scan(list(workdirs()))
            except Exception:
                log.exception("wheel cache: scan failed")

    async def scan(self, workdirs: list[Path]) -> int:
        """Cache what ``workdirs`` installed since their last scan; how many wheels were added."""
        wanted: set[tuple[str, str]] = set()
        for workdir in workdirs:
            listing = await asyncio.to_thread(site_listing, workdir)
            if listing is None or self._seen_mtime.get(workdir) == listing[0]:
                continue
            self._seen_mtime[workdir] = listing[0]
            wanted |= releases(listing[1])
        live = set(workdirs)
        for gone in [w for w in self._seen_mtime if w not in live]:
            del self._seen_mtime[gone]
        missing = sorted(wanted - self._failed - await asyncio.to_thread(self.cached))
        added = 0
        for release in missing[:MAX_PER_SCAN]:
            if await self._fetch(*release):
                added += 1
            else:
                self._failed.add(release)
        return added

    async def _fetch(self, name: str, version: str) -> bool:
        if await asyncio.to_thread(self._total_bytes) >= MAX_TOTAL_BYTES:
            log.info(
                "wheel cache: full (%d bytes), not caching %s %s", MAX_TOTAL_BYTES, name, version
            )
            return False
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=self.path.parent))
        try:
            process = await placement.spawn(
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--dest",
                str(staging),
                f"{name}=={version}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(staging),
            )
            try:
                async with asyncio.timeout(DOWNLOAD_TIMEOUT_S):
                    _, err = await process.communicate()
            except TimeoutError:
                process.kill()
                await process.wait()
                return False
            if process.returncode != 0:
                log.info("wheel cache: no wheel for %s %s: %s", name, version, err[-300:])
                return False
            return await asyncio.to_thread(self._adopt, staging, name, version)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    def _adopt(self, staging: Path, name: str, version: str) -> bool:
        adopted = False
        for wheel in staging.iterdir():
            if wheel_release(wheel.name) != (name, version) or wheel.is_symlink():
                continue
            if wheel.stat().st_size > MAX_WHEEL_BYTES:
                log.info("wheel cache: %s is larger than %d bytes", wheel.name, MAX_WHEEL_BYTES)
                continue
            os.chmod(wheel, 0o644)
            os.replace(wheel, self.path / wheel.name)
            log.info("wheel cache: added %s", wheel.name)
            adopted = True
        return adopted

    def _total_bytes(self) -> int:
        total = 0
        with os.scandir(self.path) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
        return total
