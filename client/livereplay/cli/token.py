"""Print a reader token (JWT, HS256) signed with the daemon's reader key.

The key, as for `serve`: --reader-key or --reader-key-file; without either,
$LIVEREPLAY_READER_KEY or $LIVEREPLAY_READER_KEY_FILE (one of them, not both).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from livereplay.protocol.constants import MIN_KEY_BYTES
from livereplay.protocol.tokens import mint_reader_token


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--session", help="the one session the token may read")
    scope.add_argument("--prefix", help="the token may read every session starting with this")
    parser.add_argument(
        "--ttl", default="1h", type=duration, help="lifetime, e.g. 90s, 15m, 1h, 7d (default 1h)"
    )
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--reader-key",
        metavar="KEY",
        help=f"the daemon's reader key (at least {MIN_KEY_BYTES} bytes); wins over the environment",
    )
    key.add_argument(
        "--reader-key-file",
        metavar="FILE",
        help="a file holding the key; wins over the environment",
    )


def reader_key(args: argparse.Namespace) -> str:
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
    if key is None or len(key.encode()) < MIN_KEY_BYTES:
        raise ValueError(
            f"need the daemon's reader key (at least {MIN_KEY_BYTES} bytes): --reader-key, "
            "--reader-key-file, $LIVEREPLAY_READER_KEY or $LIVEREPLAY_READER_KEY_FILE"
        )
    return key


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        key = reader_key(args)
        minted = mint_reader_token(
            key, session_id=args.session, session_prefix=args.prefix, ttl_s=args.ttl
        )
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    print(minted)
    return 0
