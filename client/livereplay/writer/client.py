"""`LiveReplayClient`: the runtime's writer, a drop-in `LiveReplayStore` (lash's trait).

`append` records the event in the client's local window and returns it with its
cursor at once: no I/O, no lock the sender holds during I/O, and no exception
because of the network. One background sender (`sender.py`, the I/O around the
rules of `machine.py`) ships the window to the daemon. Replay and subscriptions
are served from the local window under the daemon's own read rules, so they
never touch the network either.

One client per runtime process: its incarnation is fresh per construction.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import uuid
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from livereplay.protocol.clock import Clock, now_ms
from livereplay.protocol.constants import CURSOR_PREFIX, INGEST_PATH, SESSION_ID_RULE, U64_MAX
from livereplay.protocol.cursor import Cursor, StartWord, parse_cursor, valid_session_id
from livereplay.protocol.errors import LiveReplayError, WrongSession
from livereplay.protocol.ijson import encode_payload
from livereplay.protocol.records import EventOut
from livereplay.protocol.rules import Gap, read_page
from livereplay.writer.local_reads import WindowSubscription, decode_events
from livereplay.writer.machine import WriterRefused
from livereplay.writer.options import WriterOptions
from livereplay.writer.sender import Sender
from livereplay.writer.transport import Transport
from livereplay.writer.window import LocalWindow

_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class ClientClosed(LiveReplayError, RuntimeError):
    """The client was closed; it takes no more appends."""


@dataclass(frozen=True, slots=True)
class WriterStats:
    """What the client is doing. Every event appended ends up acknowledged, dropped
    (trimmed from the window before the daemon confirmed it) or refused by the daemon."""

    incarnation: str
    daemon_instance: str | None  # the daemon's instance id, as of the last connection
    connected: bool
    appended: int
    buffered: int  # retained here and not yet acknowledged (unsent or in flight)
    in_flight: int  # sent on the current connection, awaiting acknowledgement
    sent: int  # events written to a connection, re-sends included
    # Events in batches the daemon confirmed, accepted or already held (a window re-sent
    # to a restarted daemon counts again); `duplicates` are those it already held.
    acknowledged: int
    duplicates: int
    dropped: int  # events lost before the daemon confirmed them: served as writer_overflow
    refused: int  # events the daemon refused (for example after a takeover)
    reconnects: int
    connect_failures: int
    window_resends: int  # times a restarted daemon got the retained window again
    retained_events: int
    retained_bytes: int
    # Why the daemon refused this writer for good (its code, e.g. `unauthenticated`):
    # the sender has stopped and `append` raises `WriterRefused`. None while it has not.
    refusal: str | None = None


def ingest_url(url: str) -> str:
    """The ingest socket's URL from the daemon's base URL (http, https, ws or wss)."""
    parts = urlsplit(url)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"not a daemon URL (http://host:port or ws://host:port): {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(INGEST_PATH):
        path += INGEST_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _start(cursor: Cursor | str, session_id: str | None) -> tuple[Cursor | StartWord, str]:
    """Where a read starts, and in which session: a cursor (a malformed text raises
    `MalformedCursor`), or `earliest` / `latest` of `session_id` (which a word needs)."""
    if cursor in ("earliest", "latest"):
        if session_id is None:
            raise ValueError(f"{cursor!r} needs the session: pass session_id=")
        return ("earliest" if cursor == "earliest" else "latest"), session_id
    start = cursor if isinstance(cursor, Cursor) else parse_cursor(cursor)
    if session_id is not None and start.session_id != session_id:
        raise WrongSession(f"the cursor belongs to session {start.session_id!r}")
    return start, start.session_id


class LiveReplayClient:
    """The writer side of the live-replay protocol, for one runtime process.

    Construct it once (inside a running event loop its sender is a task on that
    loop, otherwise a thread), append from any thread, and close it with
    `close(timeout)`, `await aclose(timeout)` or as a context manager; a client
    still open at interpreter exit is flushed for up to `options.exit_flush_s`.

    `clock` (wall-clock milliseconds: events' `ts`, retention by age) and
    `transport` (the connection to the daemon) are for tests to drive.
    """

    def __init__(
        self,
        url: str,
        *,
        options: WriterOptions | None = None,
        token: str | None = None,
        clock: Clock = now_ms,
        transport: Transport | None = None,
    ) -> None:
        self.options = options or WriterOptions()
        self.incarnation = uuid.uuid4().hex
        self.url = ingest_url(url)
        self._cursor_head = f"{CURSOR_PREFIX}{self.incarnation}:"
        self._window = LocalWindow(self.incarnation, self.options.window, clock)
        self._sender = Sender(self.url, self._window, self.options, token, transport)
        self._closed = False
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._thread = threading.Thread(
                target=self._run_thread, name="livereplay-writer", daemon=True
            )
            self._thread.start()
        else:
            self._task = loop.create_task(self._sender.run(), name="livereplay-writer")
        _open_clients.add(self)

    def _run_thread(self) -> None:
        asyncio.run(self._sender.run())

    # -- LiveReplayStore -------------------------------------------------------

    def append(
        self, session_id: str, revision: int, payload: Any, *, turn_id: str | None = None
    ) -> EventOut:
        """Record an event and return it with its cursor, at once.

        Raises only for the caller's mistakes: `ValueError` (session id, revision),
        `NotIJson`, a `ValueError` (a payload the protocol refuses: a number outside
        what JSON and MessagePack both hold exactly, nesting deeper than 64, a lone
        surrogate), `TypeError` (a payload msgspec cannot encode as JSON),
        `AppendRefused` (`event_too_large`), `ClientClosed`, and `WriterRefused` once
        the daemon refused this writer for good (its token). Nothing is recorded when
        it raises. The returned event's `payload` is the object given, not a copy.
        """
        if self._closed:
            raise ClientClosed("the client is closed")
        if (refusal := self._sender.machine.refusal) is not None:
            raise refusal
        if not self._window.knows(session_id) and not valid_session_id(session_id):
            raise ValueError(SESSION_ID_RULE)
        if not isinstance(revision, int) or not 0 <= revision <= U64_MAX:
            raise ValueError("a revision is an unsigned 64-bit integer")
        data = encode_payload(payload)
        position, ts = self._window.append(session_id, revision, data, turn_id)
        self._sender.notify()
        cursor = f"{self._cursor_head}{revision}:{position}:{session_id}"
        return EventOut(
            session_id, self.incarnation, turn_id, revision, position, cursor, ts, payload
        )

    def current_cursor(self, session_id: str, revision: int) -> Cursor:
        """A cursor at `revision` a host can resume from, on the daemon or here.

        It names the last event the daemon acknowledged (so right after an `append`
        it is still before that event, position 0 for a new session, until its batch
        is acknowledged: the cursor an `append` returns names the event itself), and
        sits before any held event of a newer revision: earlier than the true tail only
        replays more, while a cursor ahead of the daemon would read as a gap.
        """
        position = self._window.current_position(session_id, revision)
        return Cursor(self.incarnation, revision, position, session_id)

    def earliest_cursor(self, session_id: str, revision: int) -> Cursor:
        """The cursor every event this client still retains for the session comes after."""
        earliest = self._window.earliest(session_id)
        position = self._window.current_position(session_id, revision)
        if earliest is not None:
            position = min(position, earliest)
        return Cursor(self.incarnation, revision, position, session_id)

    def replay_after_cursor(
        self, cursor: Cursor | str, *, session_id: str | None = None
    ) -> list[EventOut] | Gap:
        """The retained events after `cursor`, or the gap that prevents continuing from it.

        `cursor` may also be `"earliest"` or `"latest"` (as the daemon's `after=`), with
        the session named by `session_id`."""
        start, session_id = _start(cursor, session_id)
        after = (
            start.position if isinstance(start, Cursor) else 0 if start == "earliest" else U64_MAX
        )
        snapshot = self._window.snapshot(
            session_id, after, self.options.window.max_events_per_session
        )
        events, gap, _, _ = read_page(snapshot, start, session_id)
        if gap is not None:
            return gap
        return decode_events([e.data for e in events])

    def subscribe_after_cursor(
        self, cursor: Cursor | str, *, session_id: str | None = None
    ) -> WindowSubscription | Gap:
        """Retained events after `cursor`, then live ones; or the gap that prevents it.

        `cursor` may also be `"earliest"` or `"latest"`, with `session_id`."""
        start, session_id = _start(cursor, session_id)
        subscription = WindowSubscription(self._window, session_id, start)
        gap = subscription.first_read()
        if gap is not None:
            subscription.close()
            return gap
        return subscription

    def trim_session(self, session_id: str) -> int:
        """Apply retention to the session's window now; the number of events dropped."""
        return self._window.trim(session_id)

    # -- observing -------------------------------------------------------------

    def stats(self) -> WriterStats:
        counters = self._window.counters
        backlog = self._window.backlog()
        machine = self._sender.machine
        return WriterStats(
            incarnation=self.incarnation,
            daemon_instance=machine.instance,
            connected=machine.connected,
            appended=counters.appended,
            buffered=backlog.buffered,
            in_flight=backlog.in_flight,
            sent=counters.sent,
            acknowledged=counters.acknowledged,
            duplicates=counters.duplicates,
            dropped=counters.dropped + backlog.unnoticed_drops,
            refused=counters.refused,
            reconnects=counters.reconnects,
            connect_failures=counters.connect_failures,
            window_resends=counters.window_resends,
            retained_events=backlog.retained_events,
            retained_bytes=backlog.retained_bytes,
            refusal=None if machine.refusal is None else machine.refusal.code,
        )

    # -- closing ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _begin_close(self, timeout: float) -> None:
        self._closed = True
        _open_clients.discard(self)
        self._sender.begin_close(timeout)

    def _finish_close(self) -> bool:
        if not self._sender.done.is_set():
            self._sender.stop_now()
        self._window.closed = True
        self._window.wake_all()
        return self._window.backlog().buffered == 0

    def close(self, timeout: float = 5.0) -> bool:
        """Send what is buffered for up to `timeout` seconds, then stop the sender.

        True when the daemon acknowledged every event. Inside the sender's own event
        loop this cannot wait: it starts the flush and returns (use `aclose`).
        """
        self._begin_close(timeout)
        if self._task is not None and _on_loop_of(self._task):
            self._window.closed = True
            self._window.wake_all()
            return self._window.backlog().buffered == 0
        self._sender.done.wait(timeout + 2.0)
        return self._finish_close()

    async def aclose(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109 (mirrors close)
        """`close` for callers inside an event loop: awaits the flush without blocking."""
        if self._task is None or not _on_loop_of(self._task):
            return await asyncio.to_thread(self.close, timeout)
        self._begin_close(timeout)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout + 2.0)
        return self._finish_close()

    def _close_at_exit(self) -> None:
        if self._thread is not None:
            self.close(self.options.exit_flush_s)
        else:
            self._closed = True  # the loop that ran the sender has ended with the program

    def __enter__(self) -> LiveReplayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> LiveReplayClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _on_loop_of(task: asyncio.Task[None]) -> bool:
    try:
        return asyncio.get_running_loop() is task.get_loop()
    except RuntimeError:
        return False


_open_clients: weakref.WeakSet[LiveReplayClient] = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    """Flush clients still open when the interpreter exits (each for `exit_flush_s`)."""
    for client in list(_open_clients):
        with contextlib.suppress(Exception):
            client._close_at_exit()


__all__ = [
    "ClientClosed",
    "LiveReplayClient",
    "WriterOptions",
    "WriterRefused",
    "WriterStats",
    "ingest_url",
]
