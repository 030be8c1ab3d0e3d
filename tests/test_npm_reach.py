"""npm in a context whose allowlist leaves the registry out: its offline error at once, and
why, instead of a minute of retries of a name the context's resolver refuses.

Traffic: none leaves the machine (the context's own resolver refuses the registry's name).
"""

from __future__ import annotations

from tests.conftest import UNPUBLISHED, Client, Server
from tests.security.conftest import skip_unless_full

# npm retries a refused name for about 70 s; past this the install did not fail at once
INSTALL_S = 45


def test_packages_at_creation_fail_at_once_and_say_why(server: Server, client: Client) -> None:
    skip_unless_full(server)  # an allowlist needs the context's own network namespace
    body = {"language": "typescript", "network": {"allow": ["example.org"]}, "packages": []}
    body["packages"] = [UNPUBLISHED]
    before = {c["id"] for c in client.get("/contexts").json()["items"]}
    got = client.post("/contexts", json=body, timeout=INSTALL_S)
    assert got.status_code == 400, got.text
    [error] = got.json()["errors"]
    assert error["field"] == "packages"
    assert "registry.npmjs.org does not resolve here" in error["error"], error
    assert "network policy leaves it out" in error["error"] and "ENOTCACHED" in error["error"]
    assert {c["id"] for c in client.get("/contexts").json()["items"]} == before  # none left
