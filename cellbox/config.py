"""Server settings: one table of fields, read from flags and ``CELLBOX_*`` variables."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellbox.cluster.identity import check_node_id, check_peers, default_node_id
from cellbox.sandbox.netpolicy import SERVER_MODES


def _default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/cellbox"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "cellbox")


def _setting(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002
    return field(default=default, metadata={"help": help, **kwargs})


def _on_off(value: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in {"on", "true", "1", "yes"}:
        return True
    if lowered in {"off", "false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def _network_mode(value: str) -> str:
    lowered = str(value).strip().lower()
    if lowered not in SERVER_MODES:
        raise argparse.ArgumentTypeError(
            f"expected off, public or host, not {value!r} (host is the unfiltered, unsafe one)"
        )
    return lowered


@dataclass(frozen=True)
class Settings:
    """Every setting of the server. Flag ``--foo-bar`` and variable ``CELLBOX_FOO_BAR``."""

    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(8000, "port to listen on")
    state_dir: Path = _setting(
        Path(_default_state_dir()), "state directory: token file and context work directories"
    )
    default_timeout_ms: int = _setting(30000, "execution timeout when a request gives none")
    max_contexts: int = _setting(100, "live contexts allowed at once (429 past it)")
    idle_timeout_s: float = _setting(1800.0, "contexts idle longer than this are removed")
    output_cap_bytes: int = _setting(
        10 << 20, "stdout+stderr kept per execution (UTF-8 bytes); the rest is dropped"
    )
    items_cap_bytes: int = _setting(
        64 << 20,
        "rich items (display(), values, figures) kept per execution, counted as the JSON "
        "sent for each; an item past it is dropped whole",
    )
    body_limit_bytes: int = _setting(10 << 20, "largest request body accepted (413 past it)")
    interrupt_grace_s: float = _setting(
        2.0, "time between interrupt and kill for code that ignores the interrupt"
    )
    shutdown_grace_s: float = _setting(
        10.0, "on SIGTERM/SIGINT: time accepted executions get to finish before they are stopped"
    )
    keep_alive_s: float = _setting(
        75.0,
        "idle HTTP connections are closed after this; longer than clients keep idle "
        "connections, so none is closed under a request a client just sent",
    )
    pin_cpu: bool = _setting(
        True,
        "run the server's event loop on one CPU (what it starts runs on all): a warm "
        "execution answers sooner and costs less CPU (on|off)",
        parse=_on_off,
    )
    realtime_loop: bool = _setting(
        True,
        "with --pin-cpu: the event loop's thread runs ahead of ordinary threads on its CPU "
        "(SCHED_FIFO 1; nothing it starts inherits it), so it never waits for a turn "
        "there (on|off)",
        parse=_on_off,
    )
    pool_python: int = _setting(2, "warm Python workers kept ready")
    pool_typescript: int = _setting(2, "warm TypeScript workers kept ready")
    sandbox: bool = _setting(True, "run workers in the sandbox (on|off)", parse=_on_off)
    network: str = _setting(
        "public",
        "network for user code: off, public (internet only, never the host or internal "
        "ranges) or host (unfiltered, unsafe)",
        parse=_network_mode,
    )
    memory_limit_mb: int = _setting(2048, "memory limit per context, MiB")
    pids_limit: int = _setting(256, "processes/threads per context")
    file_size_limit_mb: int = _setting(1024, "largest file a context may write, MiB")
    disk_limit_mb: int = _setting(2048, "disk quota per context (work directory), MiB")
    upload_limit_mb: int = _setting(1024, "largest file upload or archive upload, MiB (413)")
    open_files_limit: int = _setting(1024, "open files per process of a context")
    log_level: str = _setting("info", "log level (debug, info, warning, error)")
    node_id: str = _setting(
        default_node_id(),
        "this node's id in a cluster, part of every context id (a DNS label)",
        parse=check_node_id,
    )
    peers: str = _setting(
        "",
        "the cluster's nodes: URLs (comma-separated) or dns:NAME:PORT (a headless Service)",
        parse=check_peers,
    )
    peer_dns_server: str = _setting(
        "", "DNS server (host or host:port) for dns: peers; empty: the system's resolver"
    )
    peer_refresh_s: float = _setting(1.0, "how often peers' stats are read (and peers looked up)")

    @property
    def token_file(self) -> Path:
        return self.state_dir / "api-token"

    def pool_size(self, runtime: str) -> int:
        """Warm workers kept ready for ``runtime`` (setting ``pool_<runtime>``, else 0)."""
        return int(getattr(self, f"pool_{runtime}", 0))


def _parser_type(f: dataclasses.Field) -> Any:
    if "parse" in f.metadata:
        return f.metadata["parse"]
    return {int: int, float: float, Path: Path, str: str}[_field_type(f)]


def _field_type(f: dataclasses.Field) -> type:
    return {"int": int, "float": float, "Path": Path, "str": str, "bool": bool}[str(f.type)]


def env_name(name: str) -> str:
    return "CELLBOX_" + name.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting; the default shown is the built-in one."""
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        parser.add_argument(
            flag,
            dest=f.name,
            type=_parser_type(f),
            default=None,
            help=f"{f.metadata['help']} (env {env_name(f.name)}, default {_shown(f.default)})",
        )


def _shown(default: Any) -> str:
    """A default as it would be given: ``on``/``off`` for a switch, ``none`` for nothing."""
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default) if default != "" else "none"


def load(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from flags, else ``CELLBOX_*`` variables, else the defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        given = getattr(args, f.name, None) if args is not None else None
        if given is None and env_name(f.name) in environ:
            raw = environ[env_name(f.name)]
            try:
                given = _parser_type(f)(raw)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                raise SystemExit(
                    f"cellbox: bad value for {env_name(f.name)}: {raw!r} ({exc})"
                ) from None
        if given is not None:
            values[f.name] = given
    return Settings(**values)
