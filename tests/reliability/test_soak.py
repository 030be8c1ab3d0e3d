"""The soak under chaos (``make soak`` runs it for 10 minutes), here for one minute."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_soak_for_a_minute():
    # 10 s of warm-up and 50 s of chaos: one minute of traffic
    argv = [sys.executable, "bench/soak.py", "--warmup", "10", "--duration", "50", "--seed", "14"]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=380)
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "PASSED" in result.stdout
