"""``cellbox exec``: run code once, streaming its output live."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cellbox.client import Client, Context, Execution
from cellbox.client.core import MAX_EXECUTION_S
from cellbox.commands import (
    CODE_FAILED,
    UsageError,
    client_for,
    create_context,
    existing_context,
    run,
    source_text,
)
from cellbox.commands.output import LivePrinter, failed, print_json, save_all, show_stream

EXTENSIONS = {
    ".py": "python",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".js": "typescript",
    ".mjs": "typescript",
    ".cjs": "typescript",
}


def register(
    commands: argparse._SubParsersAction,
    parent: argparse.ArgumentParser,
    new_context: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "exec",
        parents=[parent, new_context],
        help="run code and print its output",
        description="Run code in a context. Without --context a fresh context is created and "
        "deleted afterwards (--keep keeps it). Exit status: 0 when the code ran (also when it "
        "ended with sys.exit() or sys.exit(0)), 1 when it failed (its error is printed), 2 "
        "when cellbox could not run it (server down, wrong token, bad input: one line on "
        "stderr says why).",
    )
    parser.add_argument(
        "code",
        nargs="?",
        help="the code; '-' reads it from standard input, and a local file's name "
        "(script.py, app.ts) runs that file as -f does",
    )
    parser.add_argument("-f", "--file", type=Path, help="read the code from this file")
    parser.add_argument(
        "-l", "--language", help="python or typescript (default: by file extension, else python)"
    )
    parser.add_argument("-c", "--context", help="run in this existing context")
    parser.add_argument(
        "-e", "--env", action="append", default=[], metavar="K=V", help="environment variable"
    )
    parser.add_argument(
        "-t",
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help=f"execution timeout, above 0 and at most {MAX_EXECUTION_S:g} (default: the server's)",
    )
    parser.add_argument("--save", type=Path, metavar="DIR", help="save images and HTML here")
    parser.add_argument("--keep", action="store_true", help="keep the new context, print its id")
    parser.set_defaults(handler=lambda args: run(execute, args))


def seconds(text: str) -> float:
    """A ``--timeout`` as the API takes it (1 ms … 600 s), refused in the user's own unit."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= MAX_EXECUTION_S:
        raise argparse.ArgumentTypeError(
            f"must be above 0 and at most {MAX_EXECUTION_S:g} seconds, got {text}"
        )
    return value


def names_a_script(code: str | None) -> bool:
    """Whether the code argument is the name of a local source file (``cellbox exec
    analysis.py``, as ``python analysis.py``) rather than code: as code it could only fail
    (``analysis`` is not defined)."""
    if not code or "\n" in code or Path(code).suffix.lower() not in EXTENSIONS:
        return False
    try:
        return Path(code).is_file()
    except (OSError, ValueError):  # too long a name, a NUL
        return False


def read_code(args: argparse.Namespace) -> str:
    if args.file is None and names_a_script(args.code):
        args.file, args.code = Path(args.code), None
    if args.file is not None:
        if args.code is not None:
            raise UsageError("give the code or --file, not both")
        return source_text(args.file.read_bytes(), str(args.file))
    if args.code is None:
        raise UsageError("no code given (a string, -f FILE, or - for stdin)")
    if args.code == "-":
        return source_text(sys.stdin.buffer.read(), "standard input")
    return source_text(args.code, "the code argument")


def language_of(args: argparse.Namespace) -> str | None:
    if args.language:
        return args.language
    if args.file is not None:
        return EXTENSIONS.get(args.file.suffix.lower())
    return None


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--env wants NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def execute(args: argparse.Namespace) -> int:
    code, env = read_code(args), parse_env(args.env)
    with client_for(args) as client:
        context = (
            existing_context(client, args)
            if args.context is not None
            else create_context(client, args, language_of(args) or "python")
        )
        try:
            execution = _run(client, context, code, args, env)
        finally:
            if args.context is None and not args.keep:
                context.delete(missing_ok=True)
        if args.keep and not args.json:
            print(f"context: {context.id}", file=sys.stderr)
    return CODE_FAILED if failed(execution) else 0


def _run(
    client: Client, context: Context, code: str, args: argparse.Namespace, env: dict[str, str]
) -> Execution:
    language = language_of(args) if args.context is not None else None
    if args.json:
        execution = client.execute(
            code, language=language, context=context, env=env, timeout=args.timeout
        )
        out = execution.to_json()
        if args.save is not None:
            out["saved"] = [str(path) for path in save_all(execution, args.save)]
        print_json(out)
        return execution
    stream = client.stream(code, language=language, context=context, env=env, timeout=args.timeout)
    return show_stream(client, context.id, stream, LivePrinter(args.save))
