"""pip's and uv's command lines in a context: pip-only options, the packages a command names,
the names found in a site directory. Pure, standard library only."""

from __future__ import annotations

import re
from collections.abc import Iterable

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
OWN_DESTINATION = {"-t", "--target", "--prefix", "--system", "-p", "--python", "--root"}
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:[\[<>=!~;@ ]|$)")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_option(arg: str) -> tuple[str, str | None]:
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
        option, value = split_option(arg)
        if option in _PIP_ONLY_FLAGS:
            skip = option in _PIP_ONLY_WITH_VALUE and value is None
            continue
        if option == "--trusted-host":
            out.append("--allow-insecure-host" + (f"={value}" if value is not None else ""))
            continue
        out += _RENAMED.get(arg, [arg])
    return out


UPGRADE_ALL = {"-U", "--upgrade", "--reinstall"}  # uv's spelling (after translate_pip_args)


def requirement_specs(args: list[str], read: object = None) -> tuple[list[str], set[str]]:
    """The requirement strings a command names (arguments, ``-r`` files), and the normalized
    names it asks to upgrade or reinstall one by one (``-P``, ``--reinstall-package``)."""
    specs: list[str] = []
    forced: set[str] = set()
    reader = read if callable(read) else _read_text
    pending: str | None = None
    for arg in args:
        option, value = (pending, arg) if pending is not None else split_option(arg)
        pending = None
        if option in _WITH_VALUE:
            if value is None:
                pending = option
            elif option in ("-r", "--requirement", "--requirements"):
                specs += _specs_in_file(value, reader)
            elif option in ("-P", "--upgrade-package", "--reinstall-package"):
                forced |= names_of([value])
        elif not arg.startswith("-"):
            specs.append(arg)
    return specs, forced


def names_of(specs: Iterable[str]) -> set[str]:
    """Normalized names of requirement strings (paths and URLs name none)."""
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


def _specs_in_file(path: str, read: object) -> list[str]:
    text = read(path)  # type: ignore[operator]
    specs = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            specs.append(line)
    return specs


_DIST_INFO = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.]*)-([^-/]+)\.dist-info$")


def releases(entries: Iterable[str]) -> set[tuple[str, str]]:
    """(normalized name, version) of every ``*.dist-info`` among directory entries."""
    found = set()
    for entry in entries:
        match = _DIST_INFO.match(entry)
        if match:
            found.add((normalize(match.group(1)), match.group(2)))
    return found


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
