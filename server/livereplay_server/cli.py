"""`livereplay serve` (and `livereplay-server`): run the daemon.

The `livereplay` command itself is the client distribution's (`livereplay.cli`);
it adds this subcommand when the daemon is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

from . import config

DESCRIPTION = (
    "Run the daemon. Every flag can also be set as LIVEREPLAY_<FLAG_IN_CAPS>. "
    "Sizes take a byte count or a unit: 64KiB, 8MiB, 1GiB (or k, M, G: powers of 1000)."
)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The `serve` subcommand, on the `livereplay` command's subparsers."""
    serve: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="run the daemon",
        description=DESCRIPTION,
        usage="%(prog)s [FLAGS] (livereplay serve --help lists them)",
        allow_abbrev=False,
    )
    config.add_arguments(serve)
    return serve


def build_parser() -> argparse.ArgumentParser:
    """The whole `livereplay` command, as the client distribution builds it."""
    from livereplay.cli import build_parser as livereplay_parser

    return livereplay_parser()


REDIS_MISSING = "--backend redis needs the Redis client: install `livereplay-server[redis]`"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        settings = config.settings_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if settings.backend == "redis" and importlib.util.find_spec("redis") is None:
        parser.error(REDIS_MISSING)
    from .server import serve

    return serve(settings)


def main(argv: Sequence[str] | None = None) -> None:
    """`livereplay-server [FLAGS]`: the same as `livereplay serve [FLAGS]`."""
    from livereplay.cli import main as livereplay_main

    livereplay_main(["serve", *(sys.argv[1:] if argv is None else argv)])
