"""`livereplay append SESSION --revision N`: append JSON lines from stdin to a session.

By default the command is a plain producer (PROTOCOL.md section 5): it POSTs the
lines to `/v1/sessions/SESSION/events` without an incarnation or positions, so
the daemon appends them to the session as it is, under its current incarnation,
and hosts already reading it see them as live events. Lines that arrive together
go in one batch. It prints the cursor the daemon gave each event. A daemon that is
busy (429, 503) or not listening yet is retried for up to `--timeout` per batch;
a batch whose answer was lost is not re-sent (the daemon may hold it already),
and is reported.

With `--as-writer` the command is a positioned writer, a `LiveReplayClient` like
any runtime's: a fresh incarnation that takes the session over (hosts get gap
`unavailable`, `incarnation_changed`, and a previous writer's later appends are
refused). It prints each event's cursor as it is appended, then waits up to
`--timeout` for the daemon to acknowledge everything.

Exit status: 0 when all was acknowledged, 1 when not (daemon unreachable, events
dropped or refused), 2 for a bad argument or a line that is not JSON, or not
I-JSON (PROTOCOL.md section 2; nothing after it is sent; what came before is).
"""

from __future__ import annotations

import argparse
import http.client
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from livereplay.cli.common import DEFAULT_URL, daemon_url, env_default, number
from livereplay.protocol.constants import U64_MAX, MiB
from livereplay.protocol.cursor import valid_session_id
from livereplay.protocol.errors import NotIJson
from livereplay.protocol.ijson import check_json
from livereplay.writer.client import LiveReplayClient, WriterRefused

_json_value: Final = msgspec.json.Decoder(msgspec.Raw)
_answer: Final = msgspec.json.Decoder(dict[str, Any])
# Well under the daemon's default batch limits (4096 events, 4 MiB); a daemon with
# lower ones answers 413 batch_too_large and the batch is sent in halves.
BATCH_EVENTS: Final = 1000
BATCH_BYTES: Final = MiB
# uvicorn closes an idle keep-alive connection after 5 s: a request on one idle
# longer could meet that close, and a lost answer cannot be retried safely.
IDLE_REUSE_S: Final = 2.0
RETRY_STATUSES: Final = frozenset({429, 503})


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
        type=daemon_url,
        default=env_default("LIVEREPLAY_URL", DEFAULT_URL),
        help=f"the daemon, e.g. {DEFAULT_URL} or localhost:7447 (default $LIVEREPLAY_URL "
        f"or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("LIVEREPLAY_WRITER_TOKEN"),
        help="writer token, if the daemon wants one (default $LIVEREPLAY_WRITER_TOKEN)",
    )
    parser.add_argument(
        "--timeout",
        type=number,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the daemon to acknowledge a batch, retries included "
        "(with --as-writer: everything, at the end) (default 10)",
    )
    parser.add_argument(
        "--as-writer",
        action="store_true",
        help="append as a positioned writer with a new incarnation, taking the session "
        "over (hosts reading it get gap incarnation_changed); default: a plain producer",
    )


def run(args: argparse.Namespace) -> int:
    """Append each non-blank stdin line (one JSON value) as an event; print its cursor."""
    if not valid_session_id(args.session_id):
        print(
            "livereplay append: not a session id (1..256 of A-Z a-z 0-9 . _ ~ : @ + -)",
            file=sys.stderr,
        )
        return 2
    if args.timeout <= 0:
        print("livereplay append: --timeout must be positive", file=sys.stderr)
        return 2
    if args.as_writer:
        return _run_writer(args)
    return _run_producer(args)


class _BadLine(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _payload(number: int, line: bytes) -> msgspec.Raw | None:
    """The line's JSON value, None for a blank line; `_BadLine` when it is not I-JSON."""
    if not line.strip():
        return None
    try:
        raw = _json_value.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _BadLine(f"line {number} is not JSON: {exc}") from None
    payload = bytes(raw)
    try:
        check_json(payload)
    except NotIJson as exc:
        raise _BadLine(f"line {number}: {exc}") from None
    return msgspec.Raw(payload)


# -- the plain producer -------------------------------------------------------------


def _chunks(fd: int) -> Iterator[list[bytes]]:
    """stdin's lines, as many as have arrived together in each list (at least one)."""
    pending = b""
    while True:
        data = os.read(fd, 65536)
        if not data:
            if pending:
                yield [pending]
            return
        pending += data
        # Take whatever else is already there, so a file goes in large batches and an
        # interactive line goes at once.
        while len(pending) < BATCH_BYTES and select.select([fd], [], [], 0)[0]:
            more = os.read(fd, 65536)
            if not more:
                break
            pending += more
        *lines, pending = pending.split(b"\n")
        if lines:
            yield lines


class AppendFailed(Exception):
    """The daemon refused a batch, or could not be reached in time."""


class AnswerLost(AppendFailed):
    """The batch was sent but no answer came: the daemon may hold it or not."""


class Producer:
    """POSTs batches to one session, over one keep-alive connection, retrying what is safe."""

    def __init__(self, url: str, session_id: str, token: str | None, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.secure = parts.scheme.lower() in ("https", "wss")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.secure else 80)
        self.path = f"{parts.path.rstrip('/')}/v1/sessions/{session_id}/events"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0
        self.batch_events = BATCH_EVENTS

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def append(self, events: list[dict[str, Any]]) -> list[str]:
        """The cursors the daemon gave `events`; halves a batch the daemon finds too large."""
        try:
            return self._post(events)
        except _TooLarge:
            if len(events) == 1:
                raise AppendFailed("the daemon refused an event as too large") from None
        # Smaller batches from now on: the daemon's limits are lower than ours.
        step = self.batch_events = max(1, min(self.batch_events, len(events) // 2))
        cursors: list[str] = []
        for start in range(0, len(events), step):
            cursors += self.append(events[start : start + step])
        return cursors

    def _connection(self, deadline: float) -> http.client.HTTPConnection:
        if self.conn is not None and time.monotonic() - self.last_used > IDLE_REUSE_S:
            self.close()
        if self.conn is None:
            timeout = max(0.05, deadline - time.monotonic())
            kind = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
            conn = kind(self.host, self.port, timeout=timeout)
            conn.connect()  # raises OSError before anything is sent: safe to retry
            self.conn = conn
        return self.conn

    def _post(self, events: list[dict[str, Any]]) -> list[str]:
        body = msgspec.json.encode({"events": events})
        deadline = time.monotonic() + self.timeout_s
        pause = 0.05
        while True:
            try:
                conn = self._connection(deadline)
            except OSError as exc:
                self.close()
                if time.monotonic() + pause >= deadline:
                    raise AppendFailed(f"the daemon is unreachable: {exc}") from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            try:
                if conn.sock is not None:
                    conn.sock.settimeout(max(0.05, deadline - time.monotonic()))
                conn.request("POST", self.path, body, self.headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise AnswerLost(
                    f"no answer from the daemon ({exc or type(exc).__name__}): the batch "
                    "may or may not have been appended"
                ) from None
            self.last_used = time.monotonic()
            if response.will_close:
                self.close()
            if response.status == 200:
                cursors: list[str] = _answer.decode(data)["cursors"]
                return cursors
            code, message = _error(data)
            if response.status == 413 and code == "batch_too_large":
                raise _TooLarge
            if response.status in RETRY_STATUSES:
                wait = _retry_after(response.getheader("Retry-After"))
                if time.monotonic() + wait < deadline:
                    time.sleep(wait)
                    continue
            raise AppendFailed(f"refused: {response.status} {code}: {message}")


class _TooLarge(Exception):
    pass


def _error(data: bytes) -> tuple[str, str]:
    try:
        error = _answer.decode(data)["error"]
        return str(error["code"]), str(error["message"])
    except (msgspec.DecodeError, KeyError, TypeError):
        return "http_error", data[:200].decode("utf-8", "replace")


def _retry_after(value: str | None) -> float:
    try:
        return max(0.05, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def _run_producer(args: argparse.Namespace) -> int:
    producer = Producer(args.url, args.session_id, args.token, args.timeout)
    status = 0
    taken = acknowledged = 0
    failure: str | None = None
    number = 0
    try:
        for lines in _chunks(sys.stdin.fileno()):
            batch: list[dict[str, Any]] = []
            for line in lines:
                number += 1
                try:
                    payload = _payload(number, line)
                except _BadLine as exc:
                    print(f"livereplay append: {exc.message}", file=sys.stderr)
                    status = 2
                    break
                if payload is not None:
                    event: dict[str, Any] = {"revision": args.revision, "payload": payload}
                    if args.turn_id is not None:
                        event["turn_id"] = args.turn_id
                    batch.append(event)
            while batch:
                part, batch = batch[: producer.batch_events], batch[producer.batch_events :]
                taken += len(part)
                cursors = producer.append(part)
                acknowledged += len(cursors)
                print("\n".join(cursors), flush=True)
            if status:
                break
    except AppendFailed as exc:
        failure = str(exc)
    finally:
        producer.close()
    if failure is not None:
        print(
            f"livereplay append: {acknowledged} of {taken} events acknowledged ({failure})",
            file=sys.stderr,
        )
        return status or 1
    return status


# -- the positioned writer (--as-writer) --------------------------------------------


def _run_writer(args: argparse.Namespace) -> int:
    status = 0
    client = LiveReplayClient(args.url, token=args.token)
    # Learn whether the daemon takes this writer before printing any cursor: a refused
    # token must not look like a success.
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        stats = client.stats()
        if stats.connected or stats.refusal is not None:
            break
        time.sleep(0.01)
    try:
        for number, line in enumerate(sys.stdin.buffer, start=1):
            try:
                payload = _payload(number, line)
            except _BadLine as exc:
                print(f"livereplay append: {exc.message}", file=sys.stderr)
                status = 2
                break
            if payload is None:
                continue
            try:
                event = client.append(args.session_id, args.revision, payload, turn_id=args.turn_id)
            except NotIJson as exc:
                print(f"livereplay append: line {number}: {exc}", file=sys.stderr)
                status = 2
                break
            except WriterRefused as exc:
                print(f"livereplay append: {exc}", file=sys.stderr)
                client.close(0)
                return 1
            print(event.cursor, flush=True)
    finally:
        flushed = client.close(args.timeout)
    stats = client.stats()
    if stats.refusal is not None:
        print(
            f"livereplay append: the daemon refused this writer: {stats.refusal}", file=sys.stderr
        )
        return 1
    if not flushed or stats.dropped or stats.refused:
        print(
            f"livereplay append: {stats.acknowledged} of {stats.appended} events acknowledged "
            f"({stats.dropped} dropped, {stats.refused} refused, {stats.buffered} unsent)",
            file=sys.stderr,
        )
        return status or 1
    return status
