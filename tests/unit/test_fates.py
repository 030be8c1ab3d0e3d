"""The reasons kept for contexts gone without their client's doing, and the live log."""

from __future__ import annotations

from pathlib import Path

from cellbox.sessions import fates
from cellbox.sessions.fates import Fates, live_ids


def test_live_ids_follow_the_log_in_order() -> None:
    lines = ["+a", "+b", "-a", "+c", "", "garbage", "-zzz", "+a"]
    assert live_ids(lines) == ["b", "c", "a"]


def test_deleted_is_plain_and_reaped_says_why(tmp_path: Path) -> None:
    book = Fates(tmp_path / "log")
    book.created("a")
    book.created("b")
    book.deleted("a")
    book.reaped("b", 600.0)
    assert book.why("a") is None
    assert "after 600 s without use" in (book.why("b") or "")
    assert book.why("never-made") is None
    book.close()
    assert Fates(tmp_path / "log").why("b") is None  # not live any more: not lost by a restart


def test_the_next_run_tells_the_contexts_the_last_one_lost(tmp_path: Path) -> None:
    path = tmp_path / "log"
    first = Fates(path)
    for name in ("a", "b", "c"):
        first.created(name)
    first.deleted("b")
    first.close()
    second = Fates(path)
    assert "lost when the server stopped" in (second.why("a") or "")
    assert second.why("b") is None
    second.created("d")
    second.close()
    third = Fates(path)  # only what the second run left live
    assert third.why("a") is None and "lost" in (third.why("d") or "")


def test_the_log_is_compacted_to_the_live_ids(tmp_path: Path) -> None:
    path = tmp_path / "log"
    book = Fates(path)
    book.created("keep")
    for number in range(fates._COMPACT_MIN):
        book.created(f"x{number}")
        book.deleted(f"x{number}")
    book.close()
    assert len(path.read_text().splitlines()) < fates._COMPACT_MIN
    assert live_ids(path.read_text().splitlines()) == ["keep"]


def test_an_unwritable_log_only_costs_the_restart_reasons(tmp_path: Path) -> None:
    book = Fates(tmp_path / "missing-dir" / "log")
    book.created("a")
    book.deleted("a")
    book.reaped("a", 5.0)
    assert "after 5 s without use" in (book.why("a") or "")


def test_memory_is_bounded(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(fates, "REMEMBERED", 3)
    book = Fates(None)
    for number in range(5):
        book.reaped(f"c{number}", 1.0)
    assert book.why("c0") is None and book.why("c4") is not None
