"""Request fields whose rule is one pattern, read by the model and printed in the document."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cellbox.api.models import CreateContextRequest, ExecuteRequest


@pytest.mark.parametrize(
    ("spec", "accepted"),
    [
        ("numpy", True),
        ("  pandas>=2; python_version > '3.10'", True),
        ("@scope/pkg@^1", True),
        ("", False),
        ("   ", False),
        ("-e .", False),
        ("  --index-url=x", False),
        ("numpy\n", False),  # Python's $ would let a final newline through: fullmatch
        ("num\x00py", False),
        ("x" * 1001, False),
    ],
)
def test_package_specs(spec: str, accepted: bool) -> None:
    try:
        CreateContextRequest(packages=[spec])
    except ValidationError:
        assert not accepted
    else:
        assert accepted


@pytest.mark.parametrize(
    ("env", "accepted"),
    [
        ({"A": "b"}, True),
        ({"A\n": "line\n"}, True),
        ({"": "x"}, False),
        ({"A=B": "x"}, False),
        ({"A\x00": "x"}, False),
        ({"A": "x\x00"}, False),
    ],
)
def test_environment_entries(env: dict[str, str], accepted: bool) -> None:
    try:
        ExecuteRequest(code="1", env_vars=env)
    except ValidationError:
        assert not accepted
    else:
        assert accepted
