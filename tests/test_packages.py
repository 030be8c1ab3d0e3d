"""Packages in contexts, over the real API: preinstalled stack, installs from the code by
every route, npm, ``packages`` at creation, isolation, restart, the trusted wheel cache,
and an offline context. These tests reach PyPI and npm for a few small packages."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import UNPUBLISHED, Client, Server

pytestmark = pytest.mark.slow
INSTALL_MS = 180_000


def run(client: Client, context_id: str, code: str) -> dict:
    result = client.run(code, context_id=context_id, timeout_ms=INSTALL_MS)
    assert result["error"] is None, result
    return result


def stdout(result: dict) -> list[str]:
    return result["logs"]["stdout"]


@pytest.fixture
def slow_client(server: Server):
    with server.client() as c:
        c.timeout = INSTALL_MS / 1000 + 30
        yield c


def new_context(client: Client, language: str = "python", **fields) -> str:
    response = client.post("/contexts", json={"language": language, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_preinstalled_data_stack_imports(slow_client, ctx):
    code = (
        "import numpy, pandas, matplotlib, PIL, scipy, sklearn, seaborn, sympy, statsmodels\n"
        "import plotly, openpyxl, requests, bs4, pyarrow\n"
        "import scipy.stats, sklearn.linear_model, statsmodels.api\n"
        "print(sklearn.linear_model.LinearRegression().fit([[0], [1]], [0, 2]).coef_[0].round(6))\n"
        "print(sympy.integrate(sympy.Symbol('x') ** 2))"
    )
    assert stdout(run(slow_client, ctx, code)) == ["2.0", "x**3/3"]


def test_plotly_figure_is_plotly_json_plus_html(client, ctx):
    make = "import plotly.express as px\nfig = px.bar(x=['a', 'b'], y=[1, 3])\n"
    for code in (make + "fig", "fig.show()", "display(fig)"):
        items = client.run(code, context_id=ctx)["items"]
        assert len(items) == 1, items
        figure = items[0]["extra"]["application/vnd.plotly.v1+json"]
        assert figure["data"][0]["type"] == "bar" and "y" in figure["data"][0] and figure["layout"]
        assert "Plotly.newPlot" in items[0]["html"] and "<html" not in items[0]["html"]


@pytest.mark.parametrize(
    ("command", "package", "module"),
    [
        ("pip install {}", "tabulate", "tabulate"),
        ("%pip install {}", "pyjokes", "pyjokes"),
        ("!pip install {}", "inflection", "inflection"),
        (
            "import subprocess, sys\n"
            "subprocess.run([sys.executable, '-m', 'pip', 'install', '{}'], check=True)",
            "text-unidecode",
            "text_unidecode",
        ),
        ("!uv pip install {}", "humanize", "humanize"),
    ],
)
def test_install_from_the_code_imports_in_the_same_execution(
    slow_client, ctx, command, package, module
):
    result = run(
        slow_client,
        ctx,
        f"{command.format(package)}\nimport {module}, os\n"
        f"print(os.path.relpath({module}.__file__, os.getcwd()))",
    )
    assert stdout(result)[-1].startswith(f".cellbox/python/{module}")
    # and every Python process of the context sees it
    run(slow_client, ctx, f"!python -c 'import {module}'")


def test_upgrade_shadows_shared_in_that_context_only_and_survives_restart(slow_client):
    # cycler is preinstalled and preloaded (matplotlib imports it)
    one, other = new_context(slow_client), new_context(slow_client)
    version = "import cycler, importlib.metadata as m; print(m.version('cycler'))"
    shared = stdout(run(slow_client, other, version))[0]
    assert shared != "0.11.0"
    installed = run(slow_client, one, "!pip install -q cycler==0.11.0")
    assert "restarted" in installed["logs"]["stderr"][-1]  # it was imported already
    assert slow_client.post(f"/contexts/{one}/restart").status_code == 200
    assert stdout(run(slow_client, one, version)) == ["0.11.0"]
    assert stdout(run(slow_client, other, version)) == [shared]
    for context_id in (one, other):
        slow_client.delete(f"/contexts/{context_id}")


def test_installs_are_private_survive_restart_and_go_with_the_context(slow_client):
    owner, neighbour = new_context(slow_client), new_context(slow_client)
    cwd = slow_client.get(f"/contexts/{owner}").json()["cwd"]
    run(slow_client, owner, "!pip install -q tabulate")
    assert slow_client.post(f"/contexts/{owner}/restart").status_code == 200
    assert stdout(run(slow_client, owner, "import tabulate; print('ok')")) == ["ok"]
    failed = slow_client.run("import tabulate", context_id=neighbour)
    assert failed["error"]["name"] == "ModuleNotFoundError"
    assert os.path.isdir(os.path.join(cwd, ".cellbox", "python", "tabulate"))
    slow_client.delete(f"/contexts/{owner}")
    slow_client.delete(f"/contexts/{neighbour}")
    assert not os.path.exists(cwd)


def test_a_context_cannot_poison_what_another_installs(slow_client):
    attacker, victim = new_context(slow_client), new_context(slow_client)
    # the shared wheel cache is read-only; the attacker's own caches and site directory
    # are its own: a fake tabulate planted there reaches nobody
    result = run(
        slow_client,
        attacker,
        "import os, pathlib\n"
        "wheels = os.environ['CONTEXT_WHEEL_CACHE']\n"
        "try:\n"
        "    open(os.path.join(wheels, 'tabulate-9.9.9-py3-none-any.whl'), 'wb')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__, exc.errno)\n"
        "for d in (os.environ['UV_CACHE_DIR'], os.environ['CONTEXT_SITE_PACKAGES']):\n"
        "    pathlib.Path(d).mkdir(parents=True, exist_ok=True)\n"
        "    pathlib.Path(d, 'tabulate.py').write_text('POISONED = True')\n"
        "print(os.environ['UV_CACHE_DIR'].startswith(os.getcwd()))",
    )
    assert stdout(result) == ["OSError 30", "True"]
    check = run(
        slow_client,
        victim,
        "!pip install -q tabulate\nimport tabulate\n"
        "print(hasattr(tabulate, 'POISONED'), callable(tabulate.tabulate))",
    )
    assert stdout(check)[-1] == "False True"
    slow_client.delete(f"/contexts/{attacker}")
    slow_client.delete(f"/contexts/{victim}")


def test_a_release_installed_before_installs_without_download(slow_client, server):
    first = new_context(slow_client)
    run(slow_client, first, "!pip install -q tabulate")
    wheels = stdout(run(slow_client, first, "import os; print(os.environ['CONTEXT_WHEEL_CACHE'])"))
    deadline = time.monotonic() + 60
    while not any(n.startswith("tabulate-") for n in os.listdir(wheels[0])):
        assert time.monotonic() < deadline, "the server did not cache the tabulate wheel"
        time.sleep(0.5)
    # --offline: nothing may be fetched; the new context's own cache is empty
    second = new_context(slow_client)
    result = run(slow_client, second, "!uv pip install --offline tabulate\nimport tabulate")
    assert any("tabulate" in line for line in result["logs"]["stderr"]), result
    for context_id in (first, second):
        slow_client.delete(f"/contexts/{context_id}")


def test_npm_install_require_and_import_also_esm_only(slow_client):
    context_id = new_context(slow_client, "typescript", packages=["is-odd@3"])
    assert run(slow_client, context_id, 'require("is-odd")(3)')["items"][0]["text"] == "true"
    run(
        slow_client,
        context_id,
        'require("node:child_process").execSync("npm install nanoid@5", {stdio: "pipe"});',
    )
    imported = run(slow_client, context_id, 'const m = await import("nanoid"); m.nanoid(8).length')
    assert imported["items"][0]["text"] == "8"
    required = run(slow_client, context_id, 'require("nanoid").nanoid(5).length')
    assert required["items"][0]["text"] == "5"
    cwd = slow_client.get(f"/contexts/{context_id}").json()["cwd"]
    assert os.path.isdir(os.path.join(cwd, "node_modules", "nanoid"))
    slow_client.delete(f"/contexts/{context_id}")


def test_packages_at_creation(slow_client):
    context_id = new_context(slow_client, packages=["tabulate", "pyjokes>=0.6"])
    result = run(slow_client, context_id, "import tabulate, pyjokes\n1")
    assert result["execution_count"] == 1
    # The install is no cell of the context: cell 1 is the first one the client sent.
    names = run(slow_client, context_id, "sorted(n for n in dir() if 'install' in n), In[1:2], _1")
    assert names["items"][0]["text"] == "([], ['import tabulate, pyjokes\\n1'], 1)"
    slow_client.delete(f"/contexts/{context_id}")


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_packages_at_creation_failure_is_400_and_leaves_no_context(slow_client, language):
    before = {c["id"] for c in slow_client.get("/contexts").json()["items"]}
    missing = "cellbox-no-such-package-4f1d2c"
    response = slow_client.post("/contexts", json={"language": language, "packages": [missing]})
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "packages"
    assert missing in error["error"] or "404" in error["error"], error
    after = {c["id"] for c in slow_client.get("/contexts").json()["items"]}
    assert after <= before


def test_packages_field_is_validated(client):
    for bad in (["--index-url=http://x"], [""], "tabulate", [1]):
        response = client.post("/contexts", json={"packages": bad})
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["field"] == "packages"


def test_offline_context_fails_fast_with_the_installers_error():
    server = Server(network="off").start()
    try:
        with server.client() as client:
            python = new_context(client)
            result = client.run(
                "import subprocess, sys\n"
                f"subprocess.run([sys.executable, '-m', 'pip', 'install', {UNPUBLISHED!r}]).returncode",
                context_id=python,
                timeout_ms=60_000,
            )
            assert result["items"][0]["text"] != "0"
            stderr = "\n".join(result["logs"]["stderr"])
            assert UNPUBLISHED in stderr and "network was disabled" in stderr, stderr
            typescript = new_context(client, "typescript")
            result = client.run(
                'require("node:child_process").spawnSync("npm", ["install", "is-odd"], '
                '{encoding: "utf8"}).stderr',
                context_id=typescript,
                timeout_ms=60_000,
            )
            assert "ENOTCACHED" in result["items"][0]["text"], result
    finally:
        server.stop()
        server.cleanup()


def test_a_big_install_stops_at_the_disk_quota_and_leaves_the_context_usable():
    # sympy (preinstalled, named explicitly so it installs) unpacks to far more than 24 MiB
    server = Server(disk_limit_mb=24, pool_typescript=0).start()
    try:
        with server.client() as client:
            client.timeout = INSTALL_MS / 1000 + 30
            context_id = new_context(client)
            result = client.run(
                "import subprocess, sys\n"
                "r = subprocess.run([sys.executable, '-m', 'pip', 'install', 'sympy==1.13.3'])\n"
                "r.returncode",
                context_id=context_id,
                timeout_ms=INSTALL_MS,
            )
            assert result["items"][0]["text"] != "0", result
            assert "Disk quota exceeded" in "\n".join(result["logs"]["stderr"]), result
            # nothing half-installed shadows the shared sympy; small installs still work
            after = run(
                client,
                context_id,
                "import sympy, os\nprint(sympy.__file__.startswith(os.getcwd()))\n"
                "!pip install -q tabulate\nimport tabulate",
            )
            assert stdout(after) == ["False"]
    finally:
        server.stop()
        server.cleanup()
