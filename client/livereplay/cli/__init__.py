"""The `livereplay` command: `append`, `tail` and `token` from this distribution, and
`serve` when the daemon (the `livereplay-server` distribution) is installed too.

Without the daemon, `livereplay serve` says what to install and exits 2; it never
fails on an import.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from livereplay.cli import append, tail, token

SERVER_MISSING = (
    "livereplay serve: the daemon is not installed; install it with `pip install livereplay-server`"
)


def _server_installed() -> bool:
    return importlib.util.find_spec("livereplay_server") is not None


def build_parser() -> argparse.ArgumentParser:
    from livereplay import __version__

    # allow_abbrev=False everywhere: a prefix of a flag is not that flag (`--reader-key`
    # must never be read as `--reader-key-file`).
    parser = argparse.ArgumentParser(
        prog="livereplay",
        description="Bounded, resumable live replay of agent-runtime sessions.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if _server_installed():
        from livereplay_server import cli as server_cli

        serve = server_cli.add_parser(commands)
    else:
        serve = commands.add_parser(
            "serve", help="run the daemon (needs livereplay-server)", add_help=False
        )
    subcommands = {"serve": serve}
    for name, module, summary in (
        ("append", append, "append JSON lines from stdin to a session"),
        ("tail", tail, "print a session live, following it across reconnects"),
        ("token", token, "mint a reader token for one session or a session prefix"),
    ):
        subcommands[name] = commands.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        module.add_arguments(subcommands[name])
    for command in subcommands.values():
        command.set_defaults(command_parser=command)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"] and not _server_installed():
        print(SERVER_MISSING, file=sys.stderr)
        sys.exit(2)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command: argparse.ArgumentParser = args.command_parser
    if extra:
        # The subcommand's usage, not the top-level one.
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        from livereplay_server import cli as server_cli

        sys.exit(server_cli.run(args, command))
    if args.command == "token":
        sys.exit(token.run(args, command))
    if args.command == "tail":
        sys.exit(tail.run(args))
    sys.exit(append.run(args))
