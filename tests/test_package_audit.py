"""Packages and network values as a demanding user sends them: ``pip install`` of what is
preinstalled already, a package at creation that replaces a preloaded one, npm packages for
a context whose ``cwd`` lies outside its work directory, commands of installed packages,
the wheel cache and an offline context, allowlist entries that are an address with an
interface zone or an internationalized name, a lookup of a label that holds a dot.

Traffic: the package registries (two small packages), nothing else.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import time

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from cellbox.packages.satisfied import already_satisfied
from cellbox.sandbox import netpolicy
from cellbox.sandbox.dns import Forwarder
from tests.conftest import Client

INSTALL_S = 180
# releases of six that have a wheel (11 kB): the wheel cache test names ones not cached yet
SIX = ["1.10.0", "1.11.0", "1.12.0", "1.13.0", "1.14.0", "1.15.0", "1.16.0"]


def _create(client: Client, **body: object) -> str:
    response = client.post("/contexts", json=body, timeout=INSTALL_S)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _value(client: Client, context_id: str, code: str) -> str:
    result = client.run(code, context_id=context_id, timeout_ms=INSTALL_S * 1000)
    assert result["error"] is None, result
    return result["items"][0]["text"]


def test_what_the_shared_environment_meets_is_already_satisfied() -> None:
    shared = {"numpy": "2.4.6", "pandas": "3.1.1", "six": "1.17.0", "pip": "26.3"}
    specs = ["NumPy", "pandas>=2", "six==1.16", "tabulate", "pip[x]", "pandas; python_version<'3'"]
    assert already_satisfied(specs, ["-q"], shared) == {"numpy": "2.4.6", "pandas": "3.1.1"}
    assert already_satisfied(["numpy", "numpy<2"], [], shared) == {}  # one of them is not
    assert already_satisfied(["numpy", "pandas"], [], shared, own={"numpy"}) == {"pandas": "3.1.1"}
    assert already_satisfied(["numpy", "pandas"], [], shared, forced={"pandas"}) == {
        "numpy": "2.4.6"
    }
    for upgrade in ("-U", "--upgrade", "--reinstall"):
        assert already_satisfied(["numpy"], [upgrade], shared) == {}
    assert already_satisfied(["numpy @ https://example.org/numpy.whl", "./numpy"], [], shared) == {}


def test_pip_install_of_preinstalled_packages_installs_nothing(client: Client) -> None:
    context_id = _create(client)
    try:
        cycler = importlib.metadata.version("cycler")
        result = client.run(
            f"!pip install numpy 'pandas>=1' cycler=={cycler}\n"
            "import os\n"
            "site = os.environ['CONTEXT_SITE_PACKAGES']\n"
            "[n for n in os.listdir(site) if n.endswith('.dist-info')]",
            context_id=context_id,
            timeout_ms=INSTALL_S * 1000,
        )
        assert result["error"] is None, result
        assert result["items"][0]["text"] == "[]", result
        said = result["logs"]["stdout"]
        assert f"Requirement already satisfied: cycler=={cycler} (preinstalled)" in said, result
        assert not any("shadows" in line for line in result["logs"]["stderr"]), result
    finally:
        client.delete(f"/contexts/{context_id}")


def test_commands_of_installed_packages_are_on_the_path_and_pip3_x_is_the_shim(
    client: Client,
) -> None:
    context_id = _create(client)
    try:
        pip3x = "pip{}.{}".format(*__import__("sys").version_info[:2])
        result = client.run(
            f"!{pip3x} install -q tabulate\n"
            "!tabulate --help | head -1\n"
            "import subprocess\n"
            "subprocess.run(['tabulate', '--help'], capture_output=True).returncode",
            context_id=context_id,
            timeout_ms=INSTALL_S * 1000,
        )
        assert result["error"] is None, result
        assert result["logs"]["stdout"][0].startswith("Usage: tabulate"), result
        assert result["items"][0]["text"] == "0", result
    finally:
        client.delete(f"/contexts/{context_id}")


def test_another_python_of_the_system_starts_cleanly_and_sees_the_context_packages(
    client: Client,
) -> None:
    # /usr/bin/python3 (and scripts whose first line names it) has no cellbox to import
    context_id = _create(client)
    try:
        result = client.run(
            "!pip install -q tabulate\n"
            "!/usr/bin/python3 -c 'import tabulate, os; print(tabulate.__file__.startswith(os.getcwd()))'",
            context_id=context_id,
            timeout_ms=INSTALL_S * 1000,
        )
        assert result["error"] is None, result
        assert result["logs"] == {"stdout": ["True"], "stderr": []}, result
    finally:
        client.delete(f"/contexts/{context_id}")


@pytest.mark.slow
def test_a_package_at_creation_that_replaces_a_preloaded_one_is_the_one_imported(
    client: Client,
) -> None:
    # cycler is preinstalled and imported by every forked worker (matplotlib needs it)
    context_id = _create(client, packages=["cycler==0.11.0"])
    try:
        code = (
            "import os, cycler, importlib.metadata as m\n"
            "(cycler.__file__.startswith(os.environ['CONTEXT_SITE_PACKAGES']), "
            "m.version('cycler'))"
        )
        assert _value(client, context_id, code) == "(True, '0.11.0')"
        assert client.run("1", context_id=context_id)["execution_count"] == 2
    finally:
        client.delete(f"/contexts/{context_id}")


@pytest.mark.slow
@pytest.mark.parametrize("cwd", ["/", "/tmp"])
def test_npm_packages_at_creation_go_to_the_work_directory_whatever_the_cwd(
    client: Client, cwd: str
) -> None:
    context_id = _create(client, language="typescript", cwd=cwd, packages=["is-odd@3"])
    try:
        code = 'process.cwd() + " " + require("is-odd")(3)'
        assert _value(client, context_id, code) == f"'{cwd} true'"
        # in the work directory (not the private /tmp), so a restart keeps them
        assert client.post(f"/contexts/{context_id}/restart").status_code == 200
        imported = 'const m = await import("is-odd"); m.default(5)'
        assert _value(client, context_id, imported) == "true"
    finally:
        client.delete(f"/contexts/{context_id}")


@pytest.mark.slow
def test_npm_install_from_the_code_outside_the_work_directory_lands_in_it(
    client: Client,
) -> None:
    context_id = _create(client, language="typescript", cwd="/tmp")
    try:
        code = 'require("node:child_process").execSync("npm install is-odd@3", {stdio: "pipe"}); 1'
        assert _value(client, context_id, code) == "1"
        assert client.post(f"/contexts/{context_id}/restart").status_code == 200
        assert _value(client, context_id, 'require("is-odd")(7)') == "true"
    finally:
        client.delete(f"/contexts/{context_id}")


@pytest.mark.parametrize("entry", ["fe80::1%eth0", "2001:db8::%2/64"])
def test_an_address_with_an_interface_zone_is_refused_as_malformed(
    client: Client, entry: str
) -> None:
    with pytest.raises(netpolicy.PolicyError, match="zone"):
        netpolicy.parse({"allow": [entry]})
    before = {c["id"] for c in client.get("/contexts").json()["items"]}
    response = client.post("/contexts", json={"network": {"allow": ["example.org", entry]}})
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "network" and entry in error["error"], error
    assert {c["id"] for c in client.get("/contexts").json()["items"]} == before


@pytest.mark.slow
def test_the_server_fetches_nothing_for_a_context_whose_policy_keeps_it_offline(
    client: Client,
) -> None:
    # The server fills the shared wheel cache with the releases it sees in site directories.
    # An offline context naming a release (a bare dist-info is enough) must not make it
    # fetch: that would reach the index on the context's behalf, past its policy.
    offline = _create(client, network="off")
    online = _create(client)
    wheels = _value(client, online, "__import__('os').environ['CONTEXT_WHEEL_CACHE']")[1:-1]
    cached = {name.split("-")[1] for name in os.listdir(wheels) if name.startswith("six-")}
    denied, control = [version for version in SIX if version not in cached][:2]
    fetched = os.path.join(wheels, f"six-{control}-py2.py3-none-any.whl")
    plant = (
        "import os, pathlib\n"
        "pathlib.Path(os.environ['CONTEXT_SITE_PACKAGES'], 'six-{}.dist-info').mkdir(parents=True)"
    )
    try:
        # the offline one comes first in the scan's (sorted) order
        client.run(plant.format(denied), context_id=offline)
        client.run(plant.format(control), context_id=online)
        deadline = time.monotonic() + 60
        while not os.path.exists(fetched):
            assert time.monotonic() < deadline, "the server never cached the online release"
            time.sleep(0.25)
        assert not any(name.startswith(f"six-{denied}-") for name in os.listdir(wheels))
    finally:
        for context_id in (offline, online):
            client.delete(f"/contexts/{context_id}")
        if os.path.exists(fetched):
            os.remove(fetched)  # so the next run finds the same two releases uncached


def test_an_internationalized_name_is_allowed_in_its_ascii_form(client: Client) -> None:
    policy = netpolicy.parse({"allow": ["Bücher.example", "*.straße.example"]})
    assert policy.describe() == {"allow": ["xn--bcher-kva.example", "*.xn--strae-oqa.example"]}
    assert policy.allows_name("xn--bcher-kva.example")
    assert policy.allows_name("www.xn--strae-oqa.example")
    response = client.post("/contexts", json={"network": {"allow": ["bücher.example"]}})
    assert response.status_code == 201, response.text
    assert response.json()["network"] == {"allow": ["xn--bcher-kva.example"]}
    client.delete(f"/contexts/{response.json()['id']}")


async def _never_allow(addresses: list[str]) -> None:
    raise AssertionError(addresses)


def test_a_label_holding_a_dot_is_no_subdomain_of_an_allowed_name() -> None:
    # one label "evil.example" right under "com" is written "evil\\.example.com"
    policy = netpolicy.parse({"allow": ["*.example.com", "example.com"]})
    for labels in ([b"evil.example", b"com", b""], [b"example.com", b""]):
        name = dns.name.Name(labels)
        assert not policy.allows_name(name.to_text(omit_final_dot=True)), name

        # refused by the context's forwarder itself, never asked upstream (there is none)
        query = dns.message.make_query(name, "A")
        reply = asyncio.run(Forwarder(policy, [], _never_allow)._reply(query))
        assert reply.rcode() == dns.rcode.REFUSED, name
    assert policy.allows_name("www.example.com") and policy.allows_name("example.com")
