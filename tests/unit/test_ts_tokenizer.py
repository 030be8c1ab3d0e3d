"""The TypeScript worker's pure modules, tested with Node's own runner (``node --test``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cellbox.node import node_binary

TESTS = Path(__file__).resolve().parent / "ts"


def test_node_unit_tests_pass():
    files = sorted(str(path) for path in TESTS.glob("*.test.mjs"))
    assert files
    done = subprocess.run(
        [node_binary(), "--test", "--test-reporter=tap", *files],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout, done.stdout[-2000:]
