"""Pure parts of the package support: pip → uv translation, names, pip config, routes."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

from cellbox.packages import layout, python_path, wheelhouse
from cellbox.packages.creation import install_code
from cellbox.packages.pip_args import (
    names_of,
    normalize,
    releases,
    requirement_specs,
    top_level_names,
    translate_pip_args,
)
from cellbox.packages.pip_config import pip_config, uv_source_args
from cellbox.packages.reach import DEFAULT_INDEX, endpoint, has_default_route, index_url
from cellbox.packages.wheelhouse import WheelCache, wheel_release
from cellbox.workers.python import pip_lines


def test_pip_only_options_are_dropped_and_renamed():
    args = ["--user", "--progress-bar", "off", "-q", "--pre", "--no-cache-dir", "x==1"]
    assert translate_pip_args(args) == ["-q", "--prerelease", "allow", "--no-cache", "x==1"]
    assert translate_pip_args(["--timeout=5", "--trusted-host", "h", "y"]) == [
        "--allow-insecure-host",
        "h",
        "y",
    ]


def test_named_requirements_from_arguments_files_and_upgrade_packages():
    files = {"req.txt": "# c\nPandas==2.2 ; python_version>'3'\n-e ./local\nsix\n"}
    args = ["-U", "Foo_Bar[extra]>=1", "-r", "req.txt", "-P", "numpy", "./pkg", "-i", "idx"]
    specs, forced = requirement_specs(args, read=lambda p: files.get(p, ""))
    assert (names_of(specs), forced) == ({"foo-bar", "pandas", "six"}, {"numpy"})
    assert names_of(requirement_specs(["git+https://x/y.git", "https://x/a-1.whl"])[0]) == set()
    assert normalize("Ruamel.YAML_clib") == "ruamel-yaml-clib"


def test_pip_config_files_and_variables_become_uv_sources(tmp_path: Path):
    home = tmp_path
    (home / ".config/pip").mkdir(parents=True)
    (home / ".config/pip/pip.conf").write_text(
        "[global]\nindex-url = https://mirror/simple\ncert = /ca.pem\n"
        "[install]\ntrusted-host = mirror\n"
    )
    config = pip_config({"PIP_EXTRA_INDEX_URL": "https://a https://b"}, str(home))
    assert uv_source_args(config, ["x"]) == [
        "--index-url",
        "https://mirror/simple",
        "--extra-index-url",
        "https://a",
        "--extra-index-url",
        "https://b",
        "--allow-insecure-host",
        "mirror",
        "--cert",
        "/ca.pem",
    ]
    assert "--index-url" not in uv_source_args(config, ["-i", "https://own", "x"])


def test_default_route_detection():
    header = "Iface\tDestination\tGateway\n"
    assert has_default_route(header + "eth0\t00000000\t010200C0\n", "")
    assert not has_default_route(header + "eth0\t000200C0\t00000000\n", "")
    lo6 = " ".join(["0" * 32, "00", "0" * 32, "00", "0" * 32, "ffffffff", "1", "0", "200", "lo"])
    assert not has_default_route(header, lo6)
    assert has_default_route(header, lo6.replace(" lo", " eth0"))


def test_the_index_to_probe_is_the_one_uv_asks_first_or_its_proxy():
    assert index_url(["uv", "pip", "install", "x"]) == DEFAULT_INDEX
    assert index_url(["-i", "https://a/simple", "--index-url=https://b/simple"]) == (
        "https://b/simple"
    )
    assert index_url(["--default-index", "http://c:8080/s", "x"]) == "http://c:8080/s"
    assert endpoint("https://pypi.org/simple", {}) == ("pypi.org", 443)
    assert endpoint("http://mirror:8080/simple", {}) == ("mirror", 8080)
    assert endpoint("file:///wheels", {}) is None
    proxied = {"https": "http://proxy.example:3128"}
    assert endpoint("https://pypi.org/simple", proxied) == ("proxy.example", 3128)


def test_site_directory_goes_before_shared_site_packages(tmp_path, monkeypatch):
    site = tmp_path / "ctx" / ".cellbox" / "python"
    monkeypatch.setenv(python_path.SITE_VAR, str(site))
    monkeypatch.setattr(sys, "path", ["/lib/python3.11", "/venv/lib/site-packages", "/x"])
    monkeypatch.setenv("PATH", f"{python_path.SHIM_BIN}:/venv/bin:/usr/bin")
    assert python_path.activate() == str(site)
    assert sys.path == ["/lib/python3.11", str(site), "/venv/lib/site-packages", "/x"]
    # its commands after the shims (pip stays the shim), ahead of the rest, once
    commands = f"{python_path.SHIM_BIN}:{site / 'bin'}:/venv/bin:/usr/bin"
    assert os.environ["PATH"] == commands
    assert not site.exists()  # made by the first install, not before
    site.mkdir(parents=True)
    (site / "cellbox_probe_mod.py").write_text("VALUE = 7\n")
    python_path.activate()
    assert sys.path.count(str(site)) == 1 and os.environ["PATH"] == commands
    assert importlib.util.find_spec("cellbox_probe_mod").origin == str(
        site / "cellbox_probe_mod.py"
    )


def test_context_environment_points_tools_into_the_work_directory(tmp_path):
    env = layout.environment(tmp_path, "/usr/bin", tmp_path / "wheels")
    assert env["PATH"].startswith(str(layout.SHIM / "bin") + ":")
    assert env["PATH"].endswith(":/usr/bin")
    for name in ("UV_CACHE_DIR", "npm_config_cache", python_path.SITE_VAR):
        assert env[name].startswith(str(tmp_path / ".cellbox") + "/")
    assert env["CONTEXT_WHEEL_CACHE"] == str(tmp_path / "wheels")
    assert "CONTEXT_WHEEL_CACHE" not in layout.environment(tmp_path, "/usr/bin", None)


def test_names_of_releases_wheels_and_modules():
    entries = ["tabulate-0.10.0.dist-info", "tabulate", "Foo_Bar-1.2.dist-info", "x.pth"]
    assert releases(entries) == {("tabulate", "0.10.0"), ("foo-bar", "1.2")}
    assert wheel_release("Foo_Bar-1.2-py3-none-any.whl") == ("foo-bar", "1.2")
    assert wheel_release("notawheel.tar.gz") is None
    assert top_level_names(["yaml", "_yaml.cpython-311-x86_64-linux-gnu.so", "six.py", "bin"]) == {
        "yaml",
        "_yaml",
        "six",
    }


def test_install_code_quotes_specs_as_literals():
    specs = ['evil"); import os; ("', "x>=1"]
    python = install_code("python", specs, "/w")
    assert "install_for_creation(" in python and '"evil\\"); import os; (\\""' in python
    compile(python, "<code>", "eval")
    typescript = install_code("typescript", specs, '/w/"x')
    assert (
        'spawnSync("npm", ["install", "--prefix", "/w/\\"x", ...["evil\\"); import os; '
        '(\\"", "x>=1"]], { cwd: "/w/\\"x",'
    ) in typescript


def test_bare_pip_lines_become_the_pip_magic():
    lines = ["x = 1\n", "pip install -q tabulate\n", "uv pip install a\n", "import tabulate\n"]
    assert pip_lines.transform(lines) == [
        "x = 1\n",
        "get_ipython().run_line_magic('pip', 'install -q tabulate')\n",
        "get_ipython().system('uv pip install a')\n",
        "import tabulate\n",
    ]
    inside_a_string = ['s = """\n', "pip install x\n", '"""\n']
    assert pip_lines.transform(inside_a_string) == inside_a_string


def test_the_wheel_cache_looks_at_site_directories_only_after_code_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(wheelhouse, "SCAN_PERIOD_S", 0.01)
    rounds: list[int] = []

    async def main() -> tuple[int, int]:
        cache = WheelCache(tmp_path)
        cache.start(lambda: rounds.append(1) or [])
        await asyncio.sleep(0.2)
        while_idle = len(rounds)
        cache.code_ran()
        cache.code_ran()  # two executions ending together: one round
        for _ in range(500):
            if rounds:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        await cache.stop()
        return while_idle, len(rounds)

    assert asyncio.run(main()) == (0, 1)
