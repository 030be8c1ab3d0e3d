"""The zygote's control messages: what one end encodes, the other decodes the same."""

from __future__ import annotations

import pytest

from cellbox.workers.zygote import messages


@pytest.mark.parametrize(
    "message",
    [
        messages.Fork(
            id=3,
            workdir="/s/contexts/ab",
            env={"A": "b"},
            rlimits={"core": 0},
            network=False,
            tmpfs_size=1 << 20,
            keep=["/tmp/x"],
        ),
        messages.Ready(pid=12),
        messages.Forked(id=3, pid=99),
        messages.Failed(id=3, error="fork failed"),
    ],
)
def test_round_trip(message: messages.Message):
    assert messages.decode(messages.encode(message)) == message


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b'{"type": "nope"}', b'{"type": "ready"}', b'{"type": "failed", "id": 1}'],
)
def test_anything_else_is_a_value_error(payload: bytes):
    with pytest.raises(ValueError):
        messages.decode(payload)
