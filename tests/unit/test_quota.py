"""The disk quota where it cannot be set up: plain directories, and it says so."""

from __future__ import annotations

from pathlib import Path

from cellbox.sandbox.quota import DiskQuota, volume_size


def test_unenforced_quota_makes_plain_directories_and_says_so(tmp_path: Path) -> None:
    quota = DiskQuota(64 << 20)
    quota.create_dir(tmp_path / "ctx")
    assert (tmp_path / "ctx").is_dir()
    report = quota.report()
    assert report == {"disk_limit_bytes": 64 << 20, "enforced": False, "how": report["how"]}
    assert report["how"].startswith("NOT enforced") and "fill" in report["how"]
    quota.close()  # nothing mounted: nothing to do


def test_volume_size_is_most_of_the_free_space(tmp_path: Path) -> None:
    assert volume_size(tmp_path) >= 256 << 20
