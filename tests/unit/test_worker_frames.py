"""The shapes of worker frames the server accepts (``protocol.decode_worker_frame``)."""

from __future__ import annotations

import orjson
import pytest

from cellbox import protocol

GOOD = [
    {"type": "ready"},
    {"type": "chdir", "ok": False, "error": "no such directory"},
    {"type": "stdout", "id": 3, "text": ""},
    {"type": "stderr", "id": 3, "text": "x"},
    {"type": "display", "id": 3, "bundle": {"text/plain": "1"}},
    {"type": "result", "id": 3, "bundle": {}},
    {"type": "error", "id": 3, "name": "E", "value": "", "traceback": ""},
    {"type": "done", "id": 3},
]


@pytest.mark.parametrize("message", GOOD)
def test_frames_of_the_protocol_pass(message: dict) -> None:
    assert protocol.decode_worker_frame(orjson.dumps(message)) == message


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"\xff", "not JSON"),
        (b"{", "not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b"null", "not a JSON object but NoneType"),
        (b'{"text": "x"}', "unknown type 'None'"),
        (b'{"type": ["done"], "id": 1}', "unknown type"),
        (b'{"type": "bogus", "id": 1}', "unknown type 'bogus'"),
        # the server's own markers: a worker (its code) cannot pass one off as the server's
        (b'{"type": "oversized", "kind": "error", "bytes": -1}', "unknown type 'oversized'"),
        (b'{"type": "wake", "id": 1}', "unknown type 'wake'"),
        (b'{"type": "done"}', "'done' frame without a valid 'id'"),
        (b'{"type": "done", "id": "1"}', "'done' frame without a valid 'id'"),
        (b'{"type": "stdout", "id": 1}', "'stdout' frame without a valid 'text'"),
        (b'{"type": "result", "id": 1, "bundle": []}', "without a valid 'bundle'"),
        (b'{"type": "error", "id": 1, "name": "E", "value": 2, "traceback": ""}', "'value'"),
        (b'{"type": "chdir", "ok": 1, "error": ""}', "'chdir' frame without a valid 'ok'"),
    ],
)
def test_anything_else_is_a_protocol_error(payload: bytes, says: str) -> None:
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_worker_frame(payload)
    assert says in str(caught.value)
