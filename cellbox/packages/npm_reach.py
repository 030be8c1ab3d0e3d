"""Is npm's registry out of this context's reach for certain? Asked by the npm shim first.

Under an allowlist that leaves the registry out, the context's resolver refuses the name,
which glibc reports like a lookup that may pass (``EAI_AGAIN``): npm retries it for more
than a minute before it gives up. On a certain denial (:mod:`cellbox.packages.lookup`) the
shim runs npm ``--offline`` instead: npm's own error at once, and what its cache holds still
installs. Only the default registry, reached directly, is checked: a registry or proxy
named anywhere (command line, environment, an ``.npmrc``) is left to npm.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

from cellbox.packages.lookup import Failure, read_or_empty, resolve

DEFAULT_REGISTRY = "registry.npmjs.org"
_OPTIONS = ("registry", "proxy", "https-proxy")
_PROXY_VARIABLES = ("npm_config_proxy", "npm_config_https_proxy", "https_proxy", "all_proxy")


def names_own_route(args: Iterable[str], env: Mapping[str, str], npmrcs: Iterable[str]) -> bool:
    """Does npm go elsewhere than straight to the default registry here?"""
    if any(a.startswith("--") and a[2:].split("=")[0] in _OPTIONS for a in args):
        return True
    for name, value in env.items():
        name = name.lower()
        if value and (name.endswith("registry") or name in _PROXY_VARIABLES):
            return True  # npm_config_registry, a scoped registry, a proxy
    return any(word in text for text in npmrcs for word in ("registry", "proxy"))


def main(args: list[str]) -> None:
    """Print why npm should run offline, if it should (the shim says it on stderr)."""
    npmrcs = [read_or_empty(".npmrc"), read_or_empty(os.path.expanduser("~/.npmrc"))]
    if names_own_route(args, os.environ, npmrcs):
        return
    found = resolve(DEFAULT_REGISTRY, 443)
    if isinstance(found, Failure) and found.denied:
        print(f"npm: {found.reason}; running offline (only npm's cache can install)")


if __name__ == "__main__":
    main(sys.argv[1:])
