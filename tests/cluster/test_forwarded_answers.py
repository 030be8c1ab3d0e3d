"""What a forwarding node passes back is exactly the owner's answer to that request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.conftest import context_on, running
from tests.conftest import Server


@pytest.fixture(scope="module")
def pair() -> Iterator[list[Server]]:
    nodes = [Server(node_id=f"f{i}", pool_python=1, pool_typescript=0) for i in range(2)]
    with running(nodes):
        yield nodes


def test_an_interim_100_continue_is_not_taken_for_the_answer(pair):
    """curl sends `Expect: 100-continue` with every upload of unknown size; the owner then
    answers 100 before its 200. The 100 is not the answer, and the 200 after it must not be
    left on the connection to be read as the answer to the next request sent over it."""
    context = context_on(pair[1])
    with pair[0].client() as client:
        for n in range(3):
            put = client.put(
                f"/contexts/{context}/files/up{n}.txt",
                content=b"abc",
                headers={"Expect": "100-continue"},
            )
            assert put.status_code == 200, put.text
            assert put.json() == {"path": f"up{n}.txt", "size": 3}
            described = client.get(f"/contexts/{context}")
            assert described.status_code == 200, described.text
            assert described.json()["id"] == context
        listed = client.get(f"/contexts/{context}/files").json()["items"]
        assert sorted(item["path"] for item in listed) == ["up0.txt", "up1.txt", "up2.txt"]


def test_a_forwarded_answer_has_one_date_header(pair):
    context = context_on(pair[1])
    with pair[0].client() as client:
        answer = client.get(f"/contexts/{context}")
        assert answer.status_code == 200
        assert len(answer.headers.get_list("date")) == 1
        assert "server" not in answer.headers
