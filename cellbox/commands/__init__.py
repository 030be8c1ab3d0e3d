"""The client commands of the ``cellbox`` script: exec, contexts, files, repl, mcp."""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from collections.abc import Callable

from cellbox.client import CellboxError, Client, Context, InvalidRequest, Unauthorized
from cellbox.client.core import DEFAULT_URL, KEY_VAR, URL_VAR, Config, token_file
from cellbox.commands.output import print_json

# Exit statuses: the user's code failed / cellbox could not do what was asked.
CODE_FAILED = 1
CELLBOX_FAILED = 2


class UsageError(Exception):
    """A command given the wrong inputs (reported like cellbox's own errors, status 2)."""


def source_text(data: bytes | str, where: str) -> str:
    """Code as the server takes it (UTF-8 text), or a clear error naming where it came from."""
    try:
        # A str from argv or a terminal holds undecodable bytes as surrogates.
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8-sig")
    except UnicodeError as exc:
        raise UsageError(
            f"{where} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): cellbox runs UTF-8 source, so convert it first (e.g. with iconv)"
        ) from exc


def connection_options(
    json_output: bool = True, url_default: str = DEFAULT_URL
) -> argparse.ArgumentParser:
    """Options every client command takes (a parent parser); ``--json`` where output is printed."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("server")
    group.add_argument("--url", help=f"server URL (env {URL_VAR}, default {url_default})")
    group.add_argument("--api-key", help=f"API token (env {KEY_VAR}; a local server's token file)")
    if json_output:
        group.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parent


def new_context_options() -> argparse.ArgumentParser:
    """What a new context is made with (a parent parser of the commands that make one)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("a new context")
    group.add_argument(
        "--network", choices=["off", "public"], help="less network than the server allows"
    )
    group.add_argument(
        "--allow",
        action="append",
        metavar="HOST",
        help="reach only these names (*.example.org) and address ranges (repeatable)",
    )
    group.add_argument(
        "--package",
        action="append",
        metavar="SPEC",
        help="install this PyPI requirement or npm spec first (repeatable)",
    )
    return parent


def register(commands: argparse._SubParsersAction) -> None:
    from cellbox.commands import contexts, execute, files, mcp, repl

    parent = connection_options()
    for module in (execute, contexts, repl):
        module.register(commands, parent, new_context_options())
    files.register(commands, parent)
    mcp.register(commands, connection_options(json_output=False, url_default="a server of its own"))


def create_context(client: Client, args: argparse.Namespace, language: str) -> Context:
    """The context ``args`` ask for (``--network``, ``--allow``, ``--package``, ``--cwd``)."""
    if args.network and args.allow:
        raise UsageError("give --network or --allow, not both")
    network = {"allow": args.allow} if args.allow else args.network
    cwd = getattr(args, "cwd", None)
    return client.contexts.create(language, cwd=cwd, network=network, packages=args.package)


def existing_context(client: Client, args: argparse.Namespace) -> Context:
    """The context ``--context`` names; the options of a new one do not apply to it."""
    if args.network or args.allow or args.package:
        raise UsageError("--network, --allow and --package make a new context, not --context")
    return client.contexts.get(args.context)


def client_for(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key)


def run(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; turn cellbox's errors into one helpful line and exit status 2."""
    # Output the terminal's encoding cannot show is escaped, not a crash halfway through
    # (as Python already does for stderr).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    # Ctrl-C stops a cell or the command even when this process was started with SIGINT
    # ignored (as a shell without job control starts the commands it runs in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return handler(args) or 0
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:
        # Ctrl-C outside a running cell (which it interrupts instead): stop without a
        # traceback, with the status a shell gives a command that SIGINT ended.
        print(file=sys.stderr)
        return 128 + signal.SIGINT
    except Unauthorized as exc:
        report_error(f"the server rejected the API token ({exc.message}). {_token_hint(args)}")
    except InvalidRequest as exc:
        details = "\n".join(f"  {e.field}: {e.error}" for e in exc.errors)
        report_error(f"{exc.message}" + (f"\n{details}" if details else ""))
    except (CellboxError, UsageError) as exc:
        report_error(str(exc))
    except OSError as exc:
        report_error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    return CELLBOX_FAILED


def _reader_gone() -> int:
    """What is read of our output was closed early (``cellbox exec … | head``): stop quietly,
    with the status a shell gives a command that SIGPIPE ended."""
    # Output still buffered would fail again when Python flushes it at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _token_hint(args: argparse.Namespace) -> str:
    """Where the token came from, and where the right one is."""
    right = f"the token `cellbox serve` printed at start (a local server keeps it in {token_file(os.environ)})"
    source = Config.resolve(args.url, args.api_key).key_source
    if source == "argument":
        return f"Check the --api-key value: it must be {right}."
    if source == KEY_VAR:
        return f"{KEY_VAR} is set but does not match: set it to {right}."
    if source:
        return (
            f"The token was read from {source}, which belongs to another server (or an earlier "
            f"run): set {KEY_VAR} or --api-key to {right}."
        )
    return f"No token was found: set {KEY_VAR} or --api-key to {right}."


def delete_each(
    names: list[str], delete: Callable[[str], None], missing: type[Exception], as_json: bool
) -> int:
    """Delete each name in turn; like ``rm``, one that is not there does not stop the rest:
    it is reported, and the status is 2."""
    deleted: list[str] = []
    not_found: list[str] = []
    for name in names:
        try:
            delete(name)
        except missing as exc:
            report_error(str(exc))
            not_found.append(name)
        else:
            deleted.append(name)
    if as_json:
        print_json({"deleted": deleted, "not_found": not_found})
    return CELLBOX_FAILED if not_found else 0


def report_error(message: str) -> None:
    """One line on stderr for something cellbox could not do."""
    print(f"cellbox: error: {message}", file=sys.stderr)
