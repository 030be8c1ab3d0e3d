"""Every file the server runs from its package is in the wheel: the package data patterns of
``pyproject.toml`` cover each file under ``cellbox/`` that is not a Python module (the
TypeScript worker, the package shims, the playground)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cellbox"


def test_every_file_that_is_no_module_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["cellbox"]
    missing = []
    for path in PACKAGE.rglob("*"):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in relative:
            continue
        if relative.startswith("playground/vendor/") or relative.startswith(
            "playground/static/vendor/."
        ):
            continue  # the vendor build's inputs and its stamp, not served
        if not any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns):
            missing.append(relative)
    assert missing == [], missing
