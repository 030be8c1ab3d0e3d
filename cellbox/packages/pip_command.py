"""Inside a context: ``pip`` and ``uv pip`` installs go to the context's own directory.

``pip install x`` (also ``%pip``, ``!pip``, ``python -m pip``) and ``uv pip install x``
become ``uv pip install --target <site directory> x``, run as the context's user. Packages
the shared environment has already are left out of the resolution (``--excludes``) unless
the command names them, so a dependency such as numpy is not downloaded again, while
``pip install -U pandas==…`` installs that pandas into the context, ahead of the shared one.
Every other pip subcommand (``list``, ``show``, ``freeze``, ``download`` …) is the real pip,
which sees the context's packages through ``sys.path``.

pip's own configuration (``/etc/pip.conf``, the user's file, ``PIP_*`` variables) is
honoured by translating the settings that concern where packages come from to uv.
"""

from __future__ import annotations

import configparser
import os
import re
import runpy
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping

from cellbox.packages.python_path import SITE_VAR

WHEELHOUSE_VAR = "CONTEXT_WHEEL_CACHE"
UV_VAR = "CONTEXT_UV"
_ROUTED = {"install", "uninstall"}

# pip options uv does not know and that change nothing here: dropped (with their value)
_PIP_ONLY_FLAGS = {
    "--user",
    "--break-system-packages",
    "--no-warn-script-location",
    "--no-warn-conflicts",
    "--disable-pip-version-check",
    "--no-input",
    "--use-pep517",
    "--no-use-pep517",
    "--no-color",
    "--isolated",
    "--require-virtualenv",
    "--no-python-version-warning",
    "--root-user-action",
    "--progress-bar",
    "--timeout",
    "--retries",
    "--upgrade-strategy",
    "--log",
    "--src",
}
_PIP_ONLY_WITH_VALUE = {
    "--root-user-action",
    "--progress-bar",
    "--timeout",
    "--retries",
    "--upgrade-strategy",
    "--log",
    "--src",
}
_RENAMED = {
    "--no-cache-dir": ["--no-cache"],
    "-I": ["--reinstall"],
    "--ignore-installed": ["--reinstall"],
    "--force-reinstall": ["--reinstall"],
    "--pre": ["--prerelease", "allow"],
}
# options of pip or uv that take a value (so the value is not taken for a package name)
_WITH_VALUE = {
    "-r",
    "--requirement",
    "--requirements",
    "-c",
    "--constraint",
    "--constraints",
    "-e",
    "--editable",
    "-i",
    "--index-url",
    "--extra-index-url",
    "--index",
    "--default-index",
    "-f",
    "--find-links",
    "--only-binary",
    "--no-binary",
    "-P",
    "--upgrade-package",
    "-t",
    "--target",
    "--prefix",
    "-p",
    "--python",
    "--overrides",
    "--excludes",
    "-b",
    "--build-constraints",
    "--extra",
    "--group",
    "--cert",
    "--python-version",
    "--python-platform",
    "--index-strategy",
    "--keyring-provider",
    "--resolution",
    "--prerelease",
    "--exclude-newer",
    "--link-mode",
    "-C",
    "--config-setting",
    "--config-settings",
    "--cache-dir",
    "--allow-insecure-host",
    "--trusted-host",
    "--reinstall-package",
    "--refresh-package",
    "--config-file",
    "--color",
    "--torch-backend",
}
_OWN_DESTINATION = {"-t", "--target", "--prefix", "--system", "-p", "--python", "--root"}
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:[\[<>=!~;@ ]|$)")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(arg: str) -> tuple[str, str | None]:
    if arg.startswith("--") and "=" in arg:
        option, value = arg.split("=", 1)
        return option, value
    return arg, None


def translate_pip_args(args: list[str]) -> list[str]:
    """pip's ``install``/``uninstall`` options in uv's spelling; pip-only ones dropped."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        option, value = _split(arg)
        if option in _PIP_ONLY_FLAGS:
            skip = option in _PIP_ONLY_WITH_VALUE and value is None
            continue
        if option == "--trusted-host":
            out.append("--allow-insecure-host" + (f"={value}" if value is not None else ""))
            continue
        out += _RENAMED.get(arg, [arg])
    return out


def named_requirements(args: list[str], read: object = None) -> set[str]:
    """Normalized names of the packages a command names (arguments, ``-r`` files, ``-P``)."""
    names: set[str] = set()
    reader = read if callable(read) else _read_text
    pending: str | None = None
    for arg in args:
        if pending is not None:
            if pending in ("-r", "--requirement", "--requirements"):
                names |= _names_in_file(arg, reader)
            elif pending in ("-P", "--upgrade-package"):
                names |= _names_of([arg])
            pending = None
            continue
        option, value = _split(arg)
        if option in _WITH_VALUE:
            if value is None:
                pending = option
            elif option in ("--requirement", "--requirements"):
                names |= _names_in_file(value, reader)
            elif option == "--upgrade-package":
                names |= _names_of([value])
            continue
        if not arg.startswith("-"):
            names |= _names_of([arg])
    return names


def _names_of(specs: Iterable[str]) -> set[str]:
    found = set()
    for spec in specs:
        match = _NAME.match(spec.strip())
        if match and "/" not in spec.split(";")[0].split("@")[0]:
            found.add(normalize(match.group(1)))
    return found


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def _names_in_file(path: str, read: object) -> set[str]:
    text = read(path)  # type: ignore[operator]
    specs = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            specs.append(line)
    return _names_of(specs)


_DIST_INFO = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.]*)-([^-/]+)\.dist-info$")


def releases(entries: Iterable[str]) -> set[tuple[str, str]]:
    """(normalized name, version) of every ``*.dist-info`` among directory entries."""
    found = set()
    for entry in entries:
        match = _DIST_INFO.match(entry)
        if match:
            found.add((normalize(match.group(1)), match.group(2)))
    return found


def shared_distributions() -> set[str]:
    """Normalized names of what the server's environment provides (from its dist-infos)."""
    return {name for name, _ in releases(_listing(sysconfig.get_paths()["purelib"]))}


def pip_config(environ: Mapping[str, str], home: str) -> dict[str, str]:
    """pip's settings for ``install`` from its files and ``PIP_*`` variables, pip's order."""
    files = ["/etc/xdg/pip/pip.conf", "/etc/pip.conf"]
    files += [os.path.join(home, ".pip", "pip.conf"), os.path.join(home, ".config/pip/pip.conf")]
    if environ.get("PIP_CONFIG_FILE"):
        files.append(environ["PIP_CONFIG_FILE"])
    parser = configparser.RawConfigParser()
    parser.read([f for f in files if os.path.isfile(f)], encoding="utf-8")
    settings: dict[str, str] = {}
    for section in ("global", "install"):
        if parser.has_section(section):
            settings |= {k.replace("_", "-"): v for k, v in parser.items(section)}
    for key, value in environ.items():
        if key.startswith("PIP_") and key != "PIP_CONFIG_FILE":
            settings[key[4:].lower().replace("_", "-")] = value
    return settings


def uv_source_args(config: Mapping[str, str], user_args: list[str]) -> list[str]:
    """Where packages come from, as pip is configured, in uv options the user did not give."""
    given = {_split(a)[0] for a in user_args}
    out: list[str] = []
    if "index-url" in config and not given & {"-i", "--index-url", "--default-index"}:
        out += ["--index-url", config["index-url"]]
    for url in config.get("extra-index-url", "").split():
        out += ["--extra-index-url", url]
    for link in config.get("find-links", "").split():
        out += ["--find-links", link]
    for host in config.get("trusted-host", "").split():
        out += ["--allow-insecure-host", host]
    if config.get("cert") and "--cert" not in given:
        out += ["--cert", config["cert"]]
    if config.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        out.append("--no-index")
    return out


def has_default_route(route: str, ipv6_route: str) -> bool:
    """Is there a way out of this network namespace (``/proc/net/route``, ``ipv6_route``)?"""
    for line in route.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000" and fields[0] != "lo":
            return True
    for line in ipv6_route.splitlines():
        fields = line.split()
        if len(fields) == 10 and fields[0] == "0" * 32 and fields[1] == "00" and fields[9] != "lo":
            return True
    return False


def network_reachable() -> bool:
    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    return has_default_route(read("/proc/net/route"), read("/proc/net/ipv6_route"))


def install_argv(
    uv: str, command: str, args: list[str], site: str, environ: Mapping[str, str], home: str
) -> tuple[list[str], set[str]]:
    """The uv command for ``uv pip <command> <args>``; the names to exclude for installs."""
    argv = [uv, "pip", command, *args]
    if {_split(a)[0] for a in args} & _OWN_DESTINATION:
        return argv, set()  # the user chose where: no layering
    argv += ["--target", site]
    if command != "install":
        return argv, set()
    argv += ["--python", sys.executable]
    if not network_reachable():
        # no network: uv says so at once (and can still use the wheel cache), no retries
        argv.append("--offline")
    argv += uv_source_args(pip_config(environ, home), args)
    wheelhouse = environ.get(WHEELHOUSE_VAR)
    if wheelhouse and os.path.isdir(wheelhouse):
        argv += ["--find-links", wheelhouse]
    return argv, shared_distributions() - named_requirements(args)


def run_uv(command: str, args: list[str]) -> int:
    """``uv pip install|uninstall`` into the context's site directory; uv's exit status."""
    uv = os.environ.get(UV_VAR)
    site = os.environ.get(SITE_VAR)
    if not uv or not site:
        sys.stderr.write("cellbox: this context has no package directory configured\n")
        return 1
    home = os.environ.get("HOME", "/")
    argv, excluded = install_argv(uv, command, args, site, os.environ, home)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="cellbox-excludes-") as f:
        if excluded:
            f.write("\n".join(sorted(excluded)) + "\n")
            f.flush()
            argv += ["--excludes", f.name]
        before = _listing(site)
        code = subprocess.call(argv)
    if code == 0 and command == "install":
        _note_shadowed(_listing(site) - before)
    return code


def _listing(site: str) -> set[str]:
    try:
        return set(os.listdir(site))
    except OSError:
        return set()


_MODULE_SUFFIX = re.compile(r"(\.[A-Za-z0-9_-]+)?\.(py|pyc|so|pyd)$")


def top_level_names(entries: Iterable[str]) -> set[str]:
    """Importable top-level names among the entries of a site directory."""
    names: set[str] = set()
    for name in entries:
        if name.endswith((".dist-info", ".egg-info", ".pth", ".data")) or name in (
            "bin",
            "__pycache__",
        ):
            continue
        names.add(_MODULE_SUFFIX.sub("", name))
    return names


def _note_shadowed(new_entries: set[str]) -> None:
    purelib = sysconfig.get_paths()["purelib"]
    shadowed = sorted(top_level_names(new_entries) & top_level_names(_listing(purelib)))
    if shadowed:
        sys.stderr.write(
            f"cellbox: {', '.join(shadowed)} now shadows the preinstalled version in this "
            "context; a module that was already imported keeps the old version until the "
            "context is restarted\n"
        )


def pip_main(argv: list[str]) -> int:
    """``pip ...`` / ``python -m pip ...`` inside a context."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in _ROUTED:
        return _real_pip(argv)
    index = argv.index(command)
    return run_uv(command, translate_pip_args(argv[:index] + argv[index + 1 :]))


def uv_main(argv: list[str]) -> int:
    """``uv ...`` inside a context: ``uv pip install|uninstall`` into the context."""
    if len(argv) >= 2 and argv[0] == "pip" and argv[1] in _ROUTED:
        return run_uv(argv[1], argv[2:])
    uv = os.environ.get(UV_VAR) or "uv"
    os.execv(uv, [uv, *argv])
    return 127  # not reached


def _real_pip(argv: list[str]) -> int:
    """The real pip, in this process (the shim's ``pip`` package is taken off the path)."""
    shim = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["pip"].__file__ or "")))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != shim]
    for name in [n for n in sys.modules if n == "pip" or n.startswith("pip.")]:
        del sys.modules[name]
    sys.argv = ["pip", *argv]
    try:
        runpy.run_module("pip", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def install_for_creation(packages: list[str]) -> None:
    """``POST /contexts`` with ``packages``: install them; the installer's last lines on failure."""
    argv = [sys.executable, "-m", "pip", "install", *packages]
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if result.returncode != 0:
        lines = result.stdout.decode(errors="replace").strip().splitlines()
        raise RuntimeError("\n".join(lines[-20:]) or f"pip exited with {result.returncode}")
