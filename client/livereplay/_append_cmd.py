"""`livereplay append SESSION --revision N`: append JSON lines from stdin, as one writer.

The command is a `LiveReplayClient` like any runtime's: a fresh incarnation, so
it takes the session over (hosts get gap `unavailable`, `incarnation_changed`,
and a previous writer's later appends are refused). It prints each event's
cursor as it is appended, then waits up to `--timeout` for the daemon to
acknowledge everything. Exit status: 0 when all was acknowledged, 1 when not
(daemon unreachable, events dropped or refused), 2 for a line that is not JSON,
or not I-JSON (PROTOCOL.md section 2; nothing after it is read; what came before
is still sent).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Final

import msgspec

from ._cursor import U64_MAX, valid_session_id
from ._ijson import NotIJson
from ._writer import LiveReplayClient

DEFAULT_URL: Final = "http://127.0.0.1:7447"
_json_value: Final = msgspec.json.Decoder(msgspec.Raw)


def _revision(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= U64_MAX:
        raise argparse.ArgumentTypeError("a revision is an unsigned 64-bit integer")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", metavar="SESSION", help="the session to append to")
    parser.add_argument(
        "--revision", type=_revision, required=True, metavar="N", help="revision of every event"
    )
    parser.add_argument("--turn-id", default=None, metavar="ID", help="turn id of every event")
    parser.add_argument(
        "--url",
        default=os.environ.get("LIVEREPLAY_URL", DEFAULT_URL),
        help=f"the daemon (default $LIVEREPLAY_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("LIVEREPLAY_WRITER_TOKEN"),
        help="writer token, if the daemon wants one (default $LIVEREPLAY_WRITER_TOKEN)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the daemon to acknowledge everything (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    """Append each non-blank stdin line (one JSON value) as an event; print its cursor."""
    if not valid_session_id(args.session_id):
        print(
            "livereplay append: not a session id (1..256 of A-Z a-z 0-9 . _ ~ : @ + -)",
            file=sys.stderr,
        )
        return 2
    status = 0
    client = LiveReplayClient(args.url, token=args.token)
    try:
        for number, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            try:
                payload = _json_value.decode(line)
            except msgspec.DecodeError as exc:
                print(f"livereplay append: line {number} is not JSON: {exc}", file=sys.stderr)
                status = 2
                break
            try:
                event = client.append(args.session_id, args.revision, payload, turn_id=args.turn_id)
            except NotIJson as exc:
                print(f"livereplay append: line {number}: {exc}", file=sys.stderr)
                status = 2
                break
            print(event.cursor, flush=True)
    finally:
        flushed = client.close(args.timeout)
    stats = client.stats()
    if not flushed or stats.dropped or stats.refused:
        print(
            f"livereplay append: {stats.acknowledged} of {stats.appended} events acknowledged "
            f"({stats.dropped} dropped, {stats.refused} refused, {stats.buffered} unsent)",
            file=sys.stderr,
        )
        return status or 1
    return status
