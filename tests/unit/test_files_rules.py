"""Pure rules of the file API: path splitting, archive members, Range headers."""

from __future__ import annotations

import pytest

from cellbox.api.files import parse_range
from cellbox.sandbox.archive import link_target, member_parts
from cellbox.sandbox.files import FileError, file_parts, split_path

ROOT = "/state/contexts/abc"


@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        ("data/in.csv", ("data", "in.csv")),
        ("./a//b/", ("a", "b")),
        ("", ()),
        (".", ()),
        (ROOT, ()),
        (ROOT + "/x/y", ("x", "y")),
        ("...", ("...",)),
        ("a..b", ("a..b",)),
    ],
)
def test_split_path_accepts(raw: str, parts: tuple[str, ...]) -> None:
    assert split_path(raw, ROOT) == parts


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        "../x",
        "a/../../b",
        "a/..",
        "/etc/passwd",
        ROOT + "x/y",
        "/state",
        "a\0b",
        ROOT + "/..",
    ],
)
def test_split_path_refuses(raw: str) -> None:
    with pytest.raises(FileError) as caught:
        split_path(raw, ROOT)
    assert (caught.value.status, caught.value.field) == (400, "path")


def test_a_file_needs_a_name() -> None:
    for raw in ("", "/", ".", ROOT):
        with pytest.raises(FileError):
            file_parts(raw, ROOT)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a\0b"])
def test_member_names_refused(name: str) -> None:
    with pytest.raises(FileError) as caught:
        member_parts(name)
    assert caught.value.field == "archive"


def test_member_names_accepted() -> None:
    assert member_parts("./a/b.txt") == ("a", "b.txt")
    assert member_parts("./") == ()


@pytest.mark.parametrize(
    ("parts", "target"),
    [(("a", "l"), "../b"), (("l",), "b/c"), (("a", "b", "l"), "../../x"), (("l",), ".")],
)
def test_link_targets_inside(parts: tuple[str, ...], target: str) -> None:
    assert link_target(parts, target) == target


@pytest.mark.parametrize(
    ("parts", "target"),
    [
        (("l",), "/etc/passwd"),
        (("l",), ".."),
        (("a", "l"), "../../x"),
        (("l",), ""),
        (("l",), "a/../../b"),
    ],
)
def test_link_targets_outside(parts: tuple[str, ...], target: str) -> None:
    with pytest.raises(FileError):
        link_target(parts, target)


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, None),
        ("bytes=0-9", (0, 10)),
        ("bytes=5-", (5, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=-500", (0, 100)),
        ("bytes=90-200", (90, 100)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("items=0-1", None),
        ("bytes=x-y", None),
        ("bytes=5-2", None),
    ],
)
def test_parse_range(header: str | None, span: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == span


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(ValueError):
        parse_range(header, 100)
