"""How the CLI shows an execution: live output, results, saved files, JSON."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import orjson

from cellbox.client import (
    CellboxError,
    Client,
    Error,
    Event,
    Execution,
    ExecutionError,
    ExecutionStream,
    Item,
    Result,
    Stderr,
    Stdout,
)

# Representations written to files with --save, and their file extensions.
SAVED_FORMATS = {"png": "png", "jpeg": "jpg", "svg": "svg", "pdf": "pdf", "html": "html"}


def is_exit(error: ExecutionError | None) -> bool:
    """Whether the code ended itself with ``sys.exit()``, ``exit()`` or ``quit()``."""
    return error is not None and error.name == "SystemExit"


def is_clean_exit(error: ExecutionError | None) -> bool:
    """An exit with status 0 (``sys.exit()``, ``sys.exit(0)``, ``sys.exit(None)``): for a
    script that is no failure, as ``python script.py`` ends with 0 there and prints nothing."""
    return is_exit(error) and error is not None and error.value in ("", "0", "None")


def failed(execution: Execution) -> bool:
    """Whether the code failed, as an exit status tells it (a clean exit did not)."""
    return execution.error is not None and not is_clean_exit(execution.error)


def print_json(value: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    out.flush()


def save_item(item: Item, directory: Path) -> list[Path]:
    """Write each visual representation of ``item`` to ``directory/output-N.<ext>`` (a new N)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = _free_stem(directory)
    paths = []
    for name, extension in SAVED_FORMATS.items():
        value = getattr(item, name)
        if value is None:
            continue
        path = directory / f"{stem}.{extension}"
        if isinstance(value, bytes):
            path.write_bytes(value)
        else:
            path.write_text(value)
        paths.append(path)
    return paths


def _free_stem(directory: Path) -> str:
    """``output-N`` for the first N that no earlier saved file uses (earlier runs are kept)."""
    taken = {path.stem for path in directory.glob("output-*")}
    number = 1
    while f"output-{number}" in taken:
        number += 1
    return f"output-{number}"


def save_all(execution: Execution, directory: Path) -> list[Path]:
    return [path for item in execution.results for path in save_item(item, directory)]


class LivePrinter:
    """Prints events as they arrive: output lines, result text, saved files, the error."""

    def __init__(self, save_dir: Path | None, out: TextIO | None = None, err: TextIO | None = None):
        self.save_dir = save_dir
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def show(self, event: Event) -> None:
        if isinstance(event, Stdout):
            self._write(self.out, event.data)
        elif isinstance(event, Stderr):
            self._write(self.err, event.data)
        elif isinstance(event, Result):
            self.show_item(event.item)
        elif isinstance(event, Error) and not is_clean_exit(event.error):
            error = event.error
            traceback = error.traceback.rstrip("\n")
            if traceback:
                self._write(self.err, traceback)
            # Python's traceback ends with the error and Node's stack starts with it; a
            # timeout's ends in the interrupt that stopped the code: say what it was.
            if str(error) not in traceback.splitlines():
                self._write(self.err, str(error))

    def show_item(self, item: Item) -> None:
        visual = [name for name in SAVED_FORMATS if getattr(item, name) is not None]
        if visual and self.save_dir is not None:
            for path in save_item(item, self.save_dir):
                self._write(self.out, f"saved {path}")
            return
        if item.readable is not None:
            self._write(self.out, item.readable)
        if visual:
            self._write(self.err, f"[{', '.join(visual)} output not shown: use --save DIR]")

    @staticmethod
    def _write(stream: TextIO, line: str) -> None:
        stream.write(line + "\n")
        stream.flush()


def show_stream(
    client: Client, context_id: str, stream: ExecutionStream, printer: LivePrinter
) -> Execution:
    """Print a cell's events live; Ctrl-C meanwhile interrupts the cell instead of the CLI."""
    with _ctrl_c_interrupts(client, context_id, stream):
        for event in stream:
            printer.show(event)
    assert stream.execution is not None
    return stream.execution


@contextmanager
def _ctrl_c_interrupts(client: Client, context_id: str, stream: ExecutionStream) -> Iterator[None]:
    def on_sigint(signum: int, frame: object) -> None:
        if not stream.started:
            # The code is not running yet (the server answers the stream when it starts),
            # so an interrupt would find nothing to stop: drop the request instead, which
            # cancels the cell wherever it is.
            raise KeyboardInterrupt
        # The main thread is blocked reading the stream: ask from another thread and connection.
        threading.Thread(target=_interrupt, args=(client, context_id), daemon=True).start()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt(client: Client, context_id: str) -> None:
    with Client(client.config.url, client.config.api_key) as own:
        try:
            own.contexts.interrupt(context_id)
        except CellboxError as exc:
            print(f"cellbox: could not interrupt: {exc}", file=sys.stderr)
