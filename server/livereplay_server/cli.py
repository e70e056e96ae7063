"""`livereplay`: serve the daemon (and, in the client package, append and tail)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

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
    from livereplay import _append_cmd, _tail_cmd

    append = commands.add_parser(
        "append",
        help="append JSON lines from stdin to a session, as one writer",
        description=_append_cmd.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _append_cmd.add_arguments(append)

    tail = commands.add_parser(
        "tail",
        help="print a session live, following it across reconnects",
        description=_tail_cmd.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _tail_cmd.add_arguments(tail)

    token = commands.add_parser(
        "token",
        help="mint a reader token for one session or a session prefix",
        description="Print a reader token (JWT, HS256) signed with the daemon's --reader-key.",
    )
    scope = token.add_mutually_exclusive_group(required=True)
    scope.add_argument("--session", help="the one session the token may read")
    scope.add_argument("--prefix", help="the token may read every session starting with this")
    token.add_argument(
        "--ttl", default="1h", type=duration, help="lifetime, e.g. 90s, 15m, 1h, 7d (default 1h)"
    )
    token.add_argument(
        "--reader-key-file",
        help="file holding the key (default: $LIVEREPLAY_READER_KEY, else "
        "$LIVEREPLAY_READER_KEY_FILE)",
    )
    return parser


def duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return seconds


def _reader_key(args: argparse.Namespace) -> str:
    path = args.reader_key_file or os.environ.get("LIVEREPLAY_READER_KEY_FILE")
    key = Path(path).read_text().strip() if path else os.environ.get("LIVEREPLAY_READER_KEY", "")
    if len(key.encode()) < 32:
        raise ValueError(
            "need the daemon's reader key (at least 32 bytes): "
            "--reader-key-file, $LIVEREPLAY_READER_KEY or $LIVEREPLAY_READER_KEY_FILE"
        )
    return key


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
    if args.command == "token":
        from .auth import mint_reader_token

        try:
            key = _reader_key(args)
            token = mint_reader_token(
                key, session_id=args.session, session_prefix=args.prefix, ttl_s=args.ttl
            )
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        print(token)
        return
    if args.command == "tail":
        from livereplay import _tail_cmd

        sys.exit(_tail_cmd.run(args))
    if args.command == "append":
        from livereplay import _append_cmd

        sys.exit(_append_cmd.run(args))
