"""Where a context's packages live and the environment that points its tools there.

Pure functions of the work directory and the host's files (read at run time): the server
calls them when it builds a worker's environment.
"""

from __future__ import annotations

import functools
import os
import shutil
import ssl
import sys
import sysconfig
from pathlib import Path

from cellbox.packages.pip_args import top_level_names
from cellbox.packages.pip_command import UV_VAR, WHEELHOUSE_VAR
from cellbox.packages.python_path import SHIM_BIN, SITE_VAR

SHIM = Path(__file__).resolve().parent / "shim"
PRIVATE = ".cellbox"  # inside the work directory: covered by the context's disk quota


def site_dir(workdir: Path) -> Path:
    """The context's own site directory (``pip install`` targets it)."""
    return workdir / PRIVATE / "python"


def cache_dir(workdir: Path) -> Path:
    return workdir / PRIVATE / "cache"


def make_wheelhouse(cache: Path) -> Path:
    """The trusted wheel cache below the server's cache directory: the server's, 0755."""
    path = cache / "wheels"
    path.mkdir(mode=0o755, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not owned by the server's user")
    os.chmod(path, 0o755)
    return path


@functools.cache
def ca_bundle() -> str | None:
    """The host's CA bundle as OpenSSL finds it (``SSL_CERT_FILE`` or its default file)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


@functools.cache
def uv_binary() -> str | None:
    """The ``uv`` executable installed beside the server (PyPI wheel ``uv``)."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv", path=os.path.join(sys.prefix, "bin"))


def environment(workdir: Path, path: str, wheelhouse: Path | None) -> dict[str, str]:
    """Variables that send a context's installers into its own directory.

    ``path`` is the sandbox's ``PATH``; the shims for ``pip`` and ``uv`` go first.
    ``wheelhouse``: the read-only trusted wheel cache, when the sandbox can offer one.
    """
    cache = cache_dir(workdir)
    env = {
        "PATH": f"{SHIM_BIN}:{path}",
        "PYTHONPATH": str(SHIM),  # `python -m pip` and the site directory (sitecustomize)
        SITE_VAR: str(site_dir(workdir)),
        "UV_CACHE_DIR": str(cache / "uv"),
        "UV_PYTHON_DOWNLOADS": "never",
        "npm_config_cache": str(cache / "npm"),
        # the work directory's packages are found from any cwd (after the cwd's own)
        "NODE_PATH": str(workdir / "node_modules"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    uv = uv_binary()
    if uv is not None:
        env[UV_VAR] = uv
    if wheelhouse is not None:
        env[WHEELHOUSE_VAR] = str(wheelhouse)
    bundle = ca_bundle()
    if bundle is not None:
        # uv, Python's ssl and requests read these; Node adds the bundle to its own roots
        env |= {"SSL_CERT_FILE": bundle, "REQUESTS_CA_BUNDLE": bundle}
        env["NODE_EXTRA_CA_CERTS"] = bundle
    return env


@functools.cache
def _shared_names() -> frozenset[str]:
    purelib = sysconfig.get_paths()["purelib"]
    try:
        return frozenset(top_level_names(os.listdir(purelib)))
    except OSError:
        return frozenset()


def site_listing(workdir: Path) -> tuple[int, list[str]] | None:
    """(mtime in ns, entry names) of a context's site directory; None if there is none.

    Read as the server (root): links the context planted are never followed.
    """
    fd = -1
    try:
        fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        for part in site_dir(workdir).relative_to(workdir).parts:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.fstat(fd).st_mtime_ns, os.listdir(fd)
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def shadows_shared(workdir: Path) -> bool:
    """Does the context's site directory hold a module that the shared environment has too?

    Such a context must not be forked from the zygote: the zygote has the shared version
    loaded already.
    """
    listing = site_listing(workdir)
    return listing is not None and bool(top_level_names(listing[1]) & _shared_names())
