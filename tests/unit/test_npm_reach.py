"""When the npm shim checks the default registry: only when npm would go straight to it."""

from __future__ import annotations

import pytest

from cellbox.packages.npm_reach import names_own_route


@pytest.mark.parametrize(
    ("args", "env", "npmrcs", "own"),
    [
        (["install", "left-pad"], {}, ["", ""], False),
        (["install", "registry"], {}, [], False),  # a package named so
        (["install", "--registry=https://npm.example.org/"], {}, [], True),
        (["install", "--registry", "https://npm.example.org/"], {}, [], True),
        (["install"], {"npm_config_registry": "https://npm.example.org/"}, [], True),
        (["install"], {"NPM_CONFIG_@ME:REGISTRY": "https://npm.example.org/"}, [], True),
        (["install"], {"HTTPS_PROXY": "http://proxy:3128"}, [], True),
        (["install"], {"no_proxy": "localhost", "npm_config_registry": ""}, [], False),
        (["install"], {}, ["registry=https://npm.example.org/\n"], True),
        (["install"], {}, ["", "https-proxy=http://proxy:3128\n"], True),
    ],
)
def test_a_registry_or_proxy_named_anywhere_is_left_to_npm(
    args: list[str], env: dict[str, str], npmrcs: list[str], own: bool
) -> None:
    assert names_own_route(args, env, npmrcs) is own
