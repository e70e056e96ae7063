"""`livereplay`: serve the daemon (and, in the client package, append and tail)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import config


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
    serve = commands.add_parser(
        "serve",
        help="run the daemon",
        description="Run the daemon. Every flag can also be set as LIVEREPLAY_<FLAG_IN_CAPS>. "
        "Sizes take a byte count or a unit: 64KiB, 8MiB, 1GiB (or k, M, G: powers of 1000).",
        usage="%(prog)s [FLAGS] (livereplay serve --help lists them)",
        allow_abbrev=False,
    )
    config.add_arguments(serve)

    # The client commands import only the client package (msgspec, websockets).
    from livereplay import _append_cmd, _tail_cmd

    append = commands.add_parser(
        "append",
        help="append JSON lines from stdin to a session",
        description=_append_cmd.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _append_cmd.add_arguments(append)

    tail = commands.add_parser(
        "tail",
        help="print a session live, following it across reconnects",
        description=_tail_cmd.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _tail_cmd.add_arguments(tail)

    token = commands.add_parser(
        "token",
        help="mint a reader token for one session or a session prefix",
        description="Print a reader token (JWT, HS256) signed with the daemon's reader key. "
        "The key, as for `serve`: --reader-key or --reader-key-file; without either, "
        "$LIVEREPLAY_READER_KEY or $LIVEREPLAY_READER_KEY_FILE (one of them, not both).",
        allow_abbrev=False,
    )
    scope = token.add_mutually_exclusive_group(required=True)
    scope.add_argument("--session", help="the one session the token may read")
    scope.add_argument("--prefix", help="the token may read every session starting with this")
    token.add_argument(
        "--ttl", default="1h", type=duration, help="lifetime, e.g. 90s, 15m, 1h, 7d (default 1h)"
    )
    key = token.add_mutually_exclusive_group()
    key.add_argument(
        "--reader-key",
        metavar="KEY",
        help="the daemon's reader key (at least 32 bytes); wins over the environment",
    )
    key.add_argument(
        "--reader-key-file",
        metavar="FILE",
        help="a file holding the key; wins over the environment",
    )
    for command in (serve, append, tail, token):
        command.set_defaults(command_parser=command)
    return parser


def duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive and finite")
    return seconds


def _reader_key(args: argparse.Namespace) -> str:
    """The key as `serve` takes it: a flag wins; the key or its file, never both."""
    key: str | None = args.reader_key
    path: str | None = args.reader_key_file
    if key is None and path is None:
        key = os.environ.get("LIVEREPLAY_READER_KEY") or None
        path = os.environ.get("LIVEREPLAY_READER_KEY_FILE") or None
        if key is not None and path is not None:
            raise ValueError(
                "give $LIVEREPLAY_READER_KEY or $LIVEREPLAY_READER_KEY_FILE, not both "
                "(or pass --reader-key / --reader-key-file)"
            )
    if path is not None:
        try:
            key = Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the reader key file: {exc}") from None
    if key is None or len(key.encode()) < 32:
        raise ValueError(
            "need the daemon's reader key (at least 32 bytes): --reader-key, "
            "--reader-key-file, $LIVEREPLAY_READER_KEY or $LIVEREPLAY_READER_KEY_FILE"
        )
    return key


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command: argparse.ArgumentParser = args.command_parser
    if extra:
        # The subcommand's usage, not the top-level one.
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        try:
            settings = config.settings_from_args(args)
        except ValueError as exc:
            command.error(str(exc))
        from .server import serve

        sys.exit(serve(settings))
    if args.command == "token":
        from .auth import mint_reader_token

        try:
            key = _reader_key(args)
            token = mint_reader_token(
                key, session_id=args.session, session_prefix=args.prefix, ttl_s=args.ttl
            )
        except (OSError, ValueError) as exc:
            command.error(str(exc))
        print(token)
        return
    if args.command == "tail":
        from livereplay import _tail_cmd

        sys.exit(_tail_cmd.run(args))
    if args.command == "append":
        from livereplay import _append_cmd

        sys.exit(_append_cmd.run(args))
