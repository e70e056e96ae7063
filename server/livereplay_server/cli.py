"""`livereplay`: serve the daemon (and, in the client package, append and tail)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livereplay",
        description="Bounded, resumable live replay of agent-runtime sessions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the daemon",
        description="Run the daemon. Every flag can also be set as LIVEREPLAY_<FLAG_IN_CAPS>.",
    )
    config.add_arguments(serve)

    # The client commands import only the client package (msgspec, websockets).
    from livereplay import _append_cmd

    append = commands.add_parser(
        "append",
        help="append JSON lines from stdin to a session, as one writer",
        description=_append_cmd.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _append_cmd.add_arguments(append)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            settings = config.settings_from_args(args)
        except ValueError as exc:
            parser.error(str(exc))
        from .server import serve

        sys.exit(serve(settings))
    if args.command == "append":
        from livereplay import _append_cmd

        sys.exit(_append_cmd.run(args))
