"""``cellbox files put|get|ls|rm``: a context's work directory, streamed."""

from __future__ import annotations

import argparse
import posixpath
import sys
from pathlib import Path

from cellbox.client import FileNotFound
from cellbox.commands import UsageError, client_for, delete_each, run
from cellbox.commands.output import print_json


def register(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("files", help="move files in and out of a context")
    actions = parser.add_subparsers(dest="action", required=True)
    put = actions.add_parser("put", parents=[parent], help="upload a local file")
    put.add_argument("context", metavar="CONTEXT")
    put.add_argument("local", help="local file ('-' for standard input)")
    put.add_argument(
        "remote",
        nargs="?",
        help="path in the context; ending in '/': a directory (default: the name)",
    )
    put.set_defaults(handler=lambda args: run(put_file, args))
    get = actions.add_parser("get", parents=[parent], help="download a file")
    get.add_argument("context", metavar="CONTEXT")
    get.add_argument("remote", help="path in the context")
    get.add_argument(
        "local",
        nargs="?",
        help="local file ('-' for standard output); a directory: the file keeps its name in it "
        "(default: its name, here)",
    )
    get.set_defaults(handler=lambda args: run(get_file, args))
    ls = actions.add_parser("ls", parents=[parent], help="list a directory")
    ls.add_argument("context", metavar="CONTEXT")
    ls.add_argument("path", nargs="?", default="", help="directory (default: the work directory)")
    ls.add_argument("-r", "--recursive", action="store_true")
    ls.set_defaults(handler=lambda args: run(list_files, args))
    rm = actions.add_parser("rm", parents=[parent], help="delete files or directories")
    rm.add_argument("context", metavar="CONTEXT")
    rm.add_argument("paths", nargs="+", metavar="PATH")
    rm.set_defaults(handler=lambda args: run(delete_files, args))


def put_file(args: argparse.Namespace) -> None:
    if args.local == "-" and (args.remote or "/").endswith("/"):
        raise UsageError("give the remote file's path (with its name) when reading standard input")
    remote = args.remote or Path(args.local).name
    if remote.endswith("/"):  # a directory, as for cp: the file keeps its name in it
        remote += Path(args.local).name
    source = sys.stdin.buffer if args.local == "-" else Path(args.local)
    with client_for(args) as client:
        uploaded = client.contexts.get(args.context).files.upload(remote, source)
    if args.json:
        print_json({"path": uploaded.path, "size": uploaded.size})
    else:
        print(f"{uploaded.path}  {uploaded.size} bytes")


def get_file(args: argparse.Namespace) -> None:
    name = posixpath.basename(args.remote.rstrip("/"))
    local = args.local or name
    if local != "-" and (local.endswith("/") or Path(local).is_dir()):
        local = str(Path(local) / name)  # a directory, as for cp: the file keeps its name in it
    with client_for(args) as client:
        files = client.contexts.get(args.context).files
        if local == "-":
            size = files.download(args.remote, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        size = files.download(args.remote, Path(local))
    if args.json:
        print_json({"path": local, "size": size})
    else:
        print(f"{local}  {size} bytes")


def list_files(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        entries = client.contexts.get(args.context).files.list(args.path, recursive=args.recursive)
    if args.json:
        print_json([entry.to_json() for entry in entries])
        return
    for entry in entries:
        name = entry.path + ("/" if entry.type == "dir" else "")
        print(f"{entry.size:>12}  {name}")


def delete_files(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        files = client.contexts.get(args.context).files
        return delete_each(args.paths, files.delete, FileNotFound, args.json)
