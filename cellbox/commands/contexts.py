"""``cellbox contexts ls|create|rm|restart|interrupt``."""

from __future__ import annotations

import argparse

from cellbox.client import ContextInfo, ContextNotFound
from cellbox.commands import client_for, create_context, delete_each, run
from cellbox.commands.output import print_json


def register(
    commands: argparse._SubParsersAction,
    parent: argparse.ArgumentParser,
    new_context: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser("contexts", help="list and manage contexts")
    actions = parser.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("ls", parents=[parent], help="list live contexts")
    ls.set_defaults(handler=lambda args: run(list_contexts, args))
    create = actions.add_parser(
        "create", parents=[parent, new_context], help="create a context, print its id"
    )
    create.add_argument("-l", "--language", default="python", help="python or typescript")
    create.add_argument("--cwd", help="absolute work directory (as the context sees it)")
    create.set_defaults(handler=lambda args: run(create_command, args))
    rm = actions.add_parser("rm", parents=[parent], help="delete contexts")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(handler=lambda args: run(delete_contexts, args))
    for action, text in (
        ("restart", "fresh process, state cleared"),
        ("interrupt", "stop the running code"),
    ):
        sub = actions.add_parser(action, parents=[parent], help=text)
        sub.add_argument("id", metavar="ID")
        sub.set_defaults(handler=lambda args, action=action: run(_action(action), args))


def _show(info: ContextInfo, as_json: bool) -> None:
    if as_json:
        print_json(info.to_json())
    else:
        print(info.id)


def list_contexts(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        infos = [context.info for context in client.contexts.list()]
    if args.json:
        print_json([info.to_json() for info in infos])
        return
    for info in infos:
        print(f"{info.id}  {info.language:<10}  {info.cwd}")


def create_command(args: argparse.Namespace) -> None:
    with client_for(args) as client:
        _show(create_context(client, args, args.language).info, args.json)


def delete_contexts(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        return delete_each(args.ids, client.contexts.delete, ContextNotFound, args.json)


def _action(name: str):  # noqa: ANN202 - returns a command handler
    def handler(args: argparse.Namespace) -> None:
        with client_for(args) as client:
            _show(getattr(client.contexts, name)(args.id), args.json)

    return handler
