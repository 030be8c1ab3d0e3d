"""``cellbox repl``: an interactive session against one context."""

from __future__ import annotations

import argparse
import codeop
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from cellbox.client import Client, Context
from cellbox.commands import (
    CELLBOX_FAILED,
    CODE_FAILED,
    UsageError,
    client_for,
    create_context,
    existing_context,
    run,
    source_text,
)
from cellbox.commands.output import LivePrinter, failed, is_exit, print_json, show_stream

HISTORY_VAR = "CELLBOX_HISTORY"
OPENERS, CLOSERS = "([{", ")]}"


def register(
    commands: argparse._SubParsersAction,
    parent: argparse.ArgumentParser,
    new_context: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "repl",
        parents=[parent, new_context],
        help="interactive session in one context",
        description="Read cells and run them in one context. A cell that is not complete yet "
        "(an open block or bracket) continues on the next line; an empty line ends it. "
        "Ctrl-C interrupts the running cell (state is kept), Ctrl-D or exit() quits. Without --context a "
        "new context is created and deleted at the end (--keep keeps it). Cells piped in (not "
        "a terminal) all run; the exit status is then 1 when one of them failed and 2 when one "
        "could not be run (not UTF-8), as with exec; a terminal session ends with 0.",
    )
    parser.add_argument("-l", "--language", default="python", help="python or typescript")
    parser.add_argument("-c", "--context", help="attach to this existing context")
    parser.add_argument("--save", type=Path, metavar="DIR", help="save images and HTML here")
    parser.add_argument("--keep", action="store_true", help="keep the new context at the end")
    parser.set_defaults(handler=lambda args: run(repl, args))


def is_complete(source: str, language: str) -> bool:
    """Whether a cell can run as typed, or needs more lines (like Python's own REPL)."""
    if source.endswith("\n") or not source.strip():
        return True
    if language == "python":
        try:
            return codeop.compile_command(source, "<cell>", "single") is not None
        except (SyntaxError, ValueError, OverflowError):
            return True  # the server reports it (and it may be IPython syntax: %magic, !cmd)
    return _brackets_closed(source)


def _brackets_closed(source: str) -> bool:
    """TypeScript: every bracket, string, template and block comment closed."""
    depth, index, quote = 0, 0, ""
    while index < len(source):
        char, pair = source[index], source[index : index + 2]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif pair == "//":
            index = source.find("\n", index)
            if index < 0:
                break
        elif pair == "/*":
            end = source.find("*/", index + 2)
            if end < 0:
                return False
            index = end + 1
        elif char in "'\"`":
            quote = char
        elif char in OPENERS:
            depth += 1
        elif char in CLOSERS:
            depth -= 1
        index += 1
    return depth <= 0 and quote in ("", "'", '"')


def read_cell(language: str, ask: Callable[[str], str] = input) -> str:
    """One cell; EOFError when the input ends before it starts. Input that ends inside a cell
    (a piped file's last block) ends the cell, so it runs as typed."""
    lines = [ask(">>> ")]
    while not is_complete("\n".join(lines), language):
        try:
            line = ask("... ")
        except EOFError:
            break
        lines.append(line)
        if not line:
            break
    return "\n".join(lines).rstrip("\n")


def _ask() -> Callable[[str], str]:
    """``input`` with its prompts on a terminal; cells piped in get none, since the prompts
    would only be mixed into the output (Python's own REPL does the same)."""
    return input if sys.stdin.isatty() else _line_without_prompt


def _line_without_prompt(prompt: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.removesuffix("\n")


@contextlib.contextmanager
def _history() -> Iterator[None]:
    """Line editing and a history file across sessions, when readline is there."""
    try:
        import readline
    except ImportError:
        yield
        return
    path = Path(os.environ.get(HISTORY_VAR) or Path.home() / ".cellbox_history")
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(1000)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            readline.write_history_file(path)


def repl(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        if args.context is not None:
            context, owned = existing_context(client, args), False
        else:
            context, owned = create_context(client, args, args.language), True
        try:
            return _loop(client, context, args)
        finally:
            if owned and not args.keep:
                context.delete(missing_ok=True)
            elif owned:
                print(f"context kept: {context.id}", file=sys.stderr)


def _loop(client: Client, context: Context, args: argparse.Namespace) -> int:
    print(
        f"cellbox {context.language} context {context.id}: an empty line ends a cell, "
        "Ctrl-C interrupts, Ctrl-D quits",
        file=sys.stderr,
    )
    printer, ask = LivePrinter(args.save), _ask()
    status = Status(scripted=not sys.stdin.isatty())
    with _history():
        while True:
            try:
                code = source_text(read_cell(context.language, ask), "that cell")
            except EOFError:
                print(file=sys.stderr)
                return status.code
            except KeyboardInterrupt:
                print("\nKeyboardInterrupt", file=sys.stderr)
                continue
            except (UnicodeDecodeError, UsageError) as exc:  # a terminal not sending UTF-8
                print(f"cellbox: {exc}", file=sys.stderr)
                status.note(CELLBOX_FAILED)
                continue
            if not code.strip():
                continue
            try:
                if args.json:
                    execution = client.execute(code, context=context)
                    print_json(execution.to_json())
                else:
                    stream = client.stream(code, context=context)
                    execution = show_stream(client, context.id, stream, printer)
            except KeyboardInterrupt:
                # Ctrl-C before the stream's own handler was in place (the cell was not sent
                # yet), or during a --json cell (its request is dropped, which stops it).
                print("\nKeyboardInterrupt", file=sys.stderr)
                continue
            if failed(execution):
                status.note(CODE_FAILED)
            if is_exit(execution.error):  # exit(), quit(), sys.exit(): as Python's own REPL
                return status.code


class Status:
    """The exit status of a session: with cells piped in (a script), the worst of its cells
    as ``exec`` reports one (1: the code failed, 2: cellbox could not run it); a person at a
    terminal saw each error as it came, so that session ends with 0."""

    def __init__(self, scripted: bool) -> None:
        self.scripted = scripted
        self.code = 0

    def note(self, failure: int) -> None:
        if self.scripted:
            self.code = max(self.code, failure)
