"""`livereplay tail SESSION`: print a session live, as a host reader sees it.

It follows the session across daemon restarts and disconnects like any
`subscribe()` reader: events once each, gaps where history cannot be served,
and a note on stderr while it reconnects. With `--json` every line is one JSON
object with a `type` (`event`, `gap` or `caught_up`). Exit status: 0 after
Ctrl-C or a closed stdout, 1 when the daemon refuses the reader (close 44xx),
2 for a bad argument.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from datetime import UTC, datetime
from typing import Final, TextIO

import msgspec

from livereplay.cli.common import DEFAULT_URL, daemon_url, env_default
from livereplay.protocol.cursor import parse_start, valid_session_id
from livereplay.protocol.errors import MalformedCursor, WrongSession
from livereplay.protocol.frames import CaughtUpFrame, gap_frame, text
from livereplay.protocol.records import EventOut
from livereplay.protocol.rules import CaughtUp, Gap
from livereplay.reader.client import ReaderStatus, subscribe
from livereplay.reader.errors import ReaderError
from livereplay.reader.machine import Item

_encoder: Final = msgspec.json.Encoder()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", metavar="SESSION", help="the session to print")
    parser.add_argument(
        "--cursor",
        default="earliest",
        metavar="C",
        help="start after this cursor, or `earliest` (all retained, the default) or `latest`",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line (events, gaps, caught_up)"
    )
    parser.add_argument(
        "--url",
        type=daemon_url,
        default=env_default("LIVEREPLAY_URL", DEFAULT_URL),
        help=f"the daemon, e.g. {DEFAULT_URL} or localhost:7447 (default $LIVEREPLAY_URL "
        f"or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("LIVEREPLAY_READER_TOKEN"),
        help="reader token, if the daemon wants one (default $LIVEREPLAY_READER_TOKEN)",
    )


def format_json(item: Item) -> str:
    """One line: the event with `"type": "event"`, or the `gap` / `caught_up` frame."""
    if isinstance(item, EventOut):
        return _encoder.encode({"type": "event", **msgspec.structs.asdict(item)}).decode()
    if isinstance(item, Gap):
        return _encoder.encode(gap_frame(item)).decode()
    return _encoder.encode(CaughtUpFrame(text(item.cursor))).decode()


def format_text(item: Item) -> str:
    if isinstance(item, EventOut):
        when = datetime.fromtimestamp(item.ts / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
        turn = f" turn={item.turn_id}" if item.turn_id is not None else ""
        payload = _encoder.encode(item.payload).decode()
        return f"#{item.position} rev={item.revision}{turn} {when} {payload}"
    if isinstance(item, Gap):
        resume = text(item.latest_cursor) or "earliest"
        return f"-- gap: {item.reason.value} ({item.detail.value}); resuming after {resume} --"
    return f"-- caught up at {text(item.cursor) or 'the start'} --"


async def tail(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    previous: list[ReaderStatus] = ["connecting"]

    def on_status(status: ReaderStatus, reason: str | None) -> None:
        # Each failed attempt reports again; say it once per outage.
        if status == "reconnecting" and previous[0] != "reconnecting":
            print(f"livereplay tail: reconnecting ({reason})", file=err, flush=True)
        elif status == "connected" and reader.stats.connects > 1:
            print("livereplay tail: connected again", file=err, flush=True)
        previous[0] = status

    fmt = format_json if args.json else format_text
    reader = subscribe(
        args.url, args.session_id, args.cursor, token=args.token, on_status=on_status
    )
    try:
        async for item in reader:
            if isinstance(item, CaughtUp) and not args.json and reader.stats.connects > 1:
                continue  # once is news; again after each reconnect it is noise
            print(fmt(item), file=out, flush=True)
    except ReaderError as exc:
        print(f"livereplay tail: {exc}", file=err)
        return 1
    finally:
        await reader.aclose()
    return 0


def run(args: argparse.Namespace) -> int:
    """Print the session until Ctrl-C; see the module docstring for the exit status."""
    if not valid_session_id(args.session_id):
        print(
            "livereplay tail: not a session id (1..256 of A-Z a-z 0-9 . _ ~ : @ + -)",
            file=sys.stderr,
        )
        return 2
    try:
        parse_start(args.cursor, args.session_id)
    except (MalformedCursor, WrongSession) as exc:
        print(f"livereplay tail: --cursor: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(tail(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The consumer (`| head`) went away: stop quietly, and keep the final
        # flush at exit from failing again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
