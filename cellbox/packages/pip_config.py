"""pip's configuration (its files and ``PIP_*`` variables), for uv: where packages come from."""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping

from cellbox.packages.pip_args import split_option


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
    given = {split_option(a)[0] for a in user_args}
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
