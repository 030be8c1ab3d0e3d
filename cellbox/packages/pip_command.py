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

import os
import runpy
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping

from cellbox.packages.pip_args import (
    OWN_DESTINATION,
    names_of,
    releases,
    requirement_specs,
    split_option,
    top_level_names,
    translate_pip_args,
)
from cellbox.packages.pip_config import pip_config, uv_source_args
from cellbox.packages.python_path import SITE_VAR
from cellbox.packages.reach import Reach, check, index_url
from cellbox.packages.satisfied import already_satisfied

WHEELHOUSE_VAR = "CONTEXT_WHEEL_CACHE"
UV_VAR = "CONTEXT_UV"
_ROUTED = {"install", "uninstall"}


def shared_distributions() -> dict[str, str]:
    """Versions of what the server's environment provides, by normalized name (dist-infos)."""
    return dict(releases(_listing(sysconfig.get_paths()["purelib"])))


class Install:
    """What the shim runs for ``uv pip <command> <args>``.

    ``argv``: the uv command; ``excluded``: names to leave out of the resolution;
    ``satisfied``: named packages the shared environment already meets (name -> version);
    ``reach``: what the check of the package index found (out of reach: uv runs offline).
    """

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.excluded: set[str] = set()
        self.satisfied: dict[str, str] = {}
        self.reach = Reach()


def install_argv(
    uv: str, command: str, args: list[str], site: str, environ: Mapping[str, str], home: str
) -> Install:
    """How to run ``uv pip <command> <args>`` for the context whose site directory is ``site``."""
    plan = Install([uv, "pip", command, *args])
    layered = not {split_option(a)[0] for a in args} & OWN_DESTINATION  # else: the user's
    if layered:
        plan.argv += ["--target", site]
    if command != "install":
        return plan
    if layered:
        plan.argv += ["--python", sys.executable]
        plan.argv += uv_source_args(pip_config(environ, home), args)
    no_index = {"--offline", "--no-index"} & set(plan.argv)
    plan.reach = Reach() if no_index else check(index_url(plan.argv))
    if plan.reach.cut_off is not None:
        # uv says so at once (and can still use the wheel cache) instead of retrying
        plan.argv.append("--offline")
    if not layered:
        return plan
    wheelhouse = environ.get(WHEELHOUSE_VAR)
    if wheelhouse and os.path.isdir(wheelhouse):
        plan.argv += ["--find-links", wheelhouse]
    shared = shared_distributions()
    specs, forced = requirement_specs(args)
    own = {name for name, _ in releases(_listing(site))}
    plan.satisfied = already_satisfied(specs, args, shared, own, forced)
    named = (names_of(specs) | forced) - set(plan.satisfied)
    plan.excluded = set(shared) - named
    return plan


def run_uv(command: str, args: list[str]) -> int:
    """``uv pip install|uninstall`` into the context's site directory; uv's exit status."""
    uv = os.environ.get(UV_VAR)
    site = os.environ.get(SITE_VAR)
    if not uv or not site:
        sys.stderr.write("cellbox: this context has no package directory configured\n")
        return 1
    home = os.environ.get("HOME", "/")
    plan = install_argv(uv, command, args, site, os.environ, home)
    if not any(a == "--quiet" or (a[:2] == "-q" and set(a[1:]) == {"q"}) for a in args):
        for name, version in sorted(plan.satisfied.items()):
            print(f"Requirement already satisfied: {name}=={version} (preinstalled)", flush=True)
    argv = plan.argv
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="cellbox-excludes-") as f:
        if plan.excluded:
            f.write("\n".join(sorted(plan.excluded)) + "\n")
            f.flush()
            argv += ["--excludes", f.name]
        before = _listing(site)
        code = subprocess.call(argv)
    if code == 0 and command == "install":
        _note_shadowed(_listing(site) - before)
    said = plan.reach.cut_off or plan.reach.doubt
    if code != 0 and said is not None:
        sys.stderr.write(f"cellbox: {said}\n")
    return code


def _listing(site: str) -> set[str]:
    try:
        return set(os.listdir(site))
    except OSError:
        return set()


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
