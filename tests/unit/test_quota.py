"""The disk quota where it cannot be set up: plain directories, and it says so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellbox.sandbox.quota import DiskQuota, volume_size


def test_unenforced_quota_makes_plain_directories_and_says_so(tmp_path: Path) -> None:
    quota = DiskQuota(64 << 20)
    quota.create_dir(tmp_path / "ctx")
    assert (tmp_path / "ctx").is_dir()
    report = quota.report()
    assert report == {"disk_limit_bytes": 64 << 20, "enforced": False, "how": report["how"]}
    assert report["how"].startswith("NOT enforced") and "fill" in report["how"]
    quota.close()  # nothing mounted: nothing to do


@pytest.mark.skipif(os.geteuid() != 0, reason="without root, setup stops before the mount point")
def test_a_live_servers_volume_is_left_alone(tmp_path: Path) -> None:
    quota = DiskQuota(64 << 20)
    quota.setup(Path("/proc"), tmp_path / "img", owner=False)  # /proc: a mount point
    assert not quota.enforced and "another live server" in quota.reason
    assert not (tmp_path / "img").exists()


def test_volume_size_is_most_of_the_free_space(tmp_path: Path) -> None:
    assert volume_size(tmp_path) >= 256 << 20
