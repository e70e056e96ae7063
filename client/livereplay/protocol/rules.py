"""The read-rule table (PROTOCOL.md section 4) and a reader's progress through it.

`check` is the table for one read. `ReadProgress` is one connection's reader going
through it: it is fed snapshots of the session (head plus the events after its
position) and answers with the frames to send. It never performs I/O, so the daemon's WebSocket
handler and the tests drive the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .constants import U64_MAX
from .cursor import Cursor, StartWord
from .session_log import SessionLog, StoredEvent


class GapReason(StrEnum):
    TRIMMED = "trimmed"
    UNAVAILABLE = "unavailable"


class GapDetail(StrEnum):
    RETENTION = "retention"
    LAGGED = "lagged"
    WRITER_OVERFLOW = "writer_overflow"
    INCARNATION_CHANGED = "incarnation_changed"
    AHEAD_OF_TAIL = "ahead_of_tail"
    UNKNOWN_SESSION = "unknown_session"
    SESSION_DELETED = "session_deleted"


@dataclass(frozen=True, slots=True)
class Head:
    """What a reader needs to know of a session, read atomically with a page."""

    session_id: str
    incarnation: str
    tail: int
    latest_revision: int
    oldest: Cursor | None  # the oldest retained event's cursor
    # A writer restoring its window up to this position until then (rule 4); 0: none.
    restoring_to: int = 0
    restore_until_ms: int = 0

    @property
    def tail_cursor(self) -> Cursor:
        return Cursor(self.incarnation, self.latest_revision, self.tail, self.session_id)

    def start_cursor(self, word: StartWord) -> Cursor:
        if word == "latest" or self.oldest is None:
            return self.tail_cursor
        return Cursor(
            self.incarnation, self.latest_revision, self.oldest.position - 1, self.session_id
        )

    @classmethod
    def of(cls, log: SessionLog) -> Head:
        oldest = log.oldest
        return cls(
            log.session_id,
            log.incarnation,
            log.tail,
            log.latest_revision,
            log.event_cursor(oldest) if oldest else None,
            log.restoring_to,
            log.restore_until_ms,
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A session's head and up to one page of events after a position, read together."""

    head: Head | None
    events: list[StoredEvent] = field(default_factory=list)
    next_in_hole: bool = False  # the position after the one asked for was never received

    @classmethod
    def of(cls, log: SessionLog | None, after: int, limit: int, max_bytes: int) -> Snapshot:
        if log is None:
            return cls(None)
        return cls(Head.of(log), log.after(after, limit, max_bytes), log.in_hole(after + 1))


@dataclass(frozen=True, slots=True)
class Gap:
    session_id: str
    requested_cursor: str
    latest_cursor: Cursor | None
    latest_revision: int | None
    reason: GapReason
    detail: GapDetail
    earliest_cursor: Cursor | None

    @classmethod
    def unknown(cls, session_id: str, requested: str, detail: GapDetail) -> Gap:
        return cls(session_id, requested, None, None, GapReason.UNAVAILABLE, detail, None)


def wait_until(
    head: Head | None, cursor: Cursor | None, now_ms: int, grace_until_ms: int
) -> int | None:
    """Until when a read must wait rather than answer (rules 2 and 4); None: answer now.

    During the startup grace a cursor for an unknown session, or one ahead of the tail
    of its incarnation, waits for the writer to re-send its window; so does a cursor a
    writer's restore under way will reach, until that restore's deadline.
    """
    if cursor is None or cursor.position == 0:
        return None
    if head is None:
        return grace_until_ms if now_ms < grace_until_ms else None
    if cursor.incarnation != head.incarnation or cursor.position <= head.tail:
        return None
    until = grace_until_ms if now_ms < grace_until_ms else 0
    if cursor.position <= head.restoring_to and now_ms < head.restore_until_ms:
        until = max(until, head.restore_until_ms)
    return until or None


def check(head: Head, cursor: Cursor, snapshot: Snapshot, *, reading: bool) -> Gap | None:
    """Rules 3 to 5 for a known session; None means rule 6 (serve what follows)."""
    p = cursor.position
    if cursor.incarnation != head.incarnation:
        reason, detail = GapReason.UNAVAILABLE, GapDetail.INCARNATION_CHANGED
    elif p > head.tail:
        reason, detail = GapReason.UNAVAILABLE, GapDetail.AHEAD_OF_TAIL
    elif p < head.tail and (not snapshot.events or snapshot.events[0].position != p + 1):
        reason = GapReason.TRIMMED
        if snapshot.next_in_hole:
            detail = GapDetail.WRITER_OVERFLOW
        elif reading:
            detail = GapDetail.LAGGED
        else:
            detail = GapDetail.RETENTION
    else:
        return None
    return Gap(
        head.session_id,
        str(cursor),
        head.tail_cursor,
        head.latest_revision,
        reason,
        detail,
        head.oldest,
    )


def contiguous(events: list[StoredEvent], after: int) -> list[StoredEvent]:
    """The events at `after + 1`, `after + 2`, ...: a page stops before a hole, so the
    next read reports it as a gap instead of skipping it."""
    page: list[StoredEvent] = []
    for event in events:
        if event.position <= after:
            continue
        if event.position != after + 1 + len(page):
            break
        page.append(event)
    return page


# -- a reader's progress -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    cursor: Cursor | None
    head: Cursor | None


@dataclass(frozen=True, slots=True)
class Events:
    events: list[StoredEvent]


@dataclass(frozen=True, slots=True)
class CaughtUp:
    cursor: Cursor | None


Output = Hello | Events | Gap | CaughtUp


class ReadProgress:
    """One reader's position in one session's log.

    `after()` says where to read next; `feed()` takes the snapshot read there and
    returns the frames to send. `more` tells whether to read again at once (a
    backlog page was full) or wait for the session to change.
    """

    def __init__(self, session_id: str, start: Cursor | StartWord, *, grace_until_ms: int = 0):
        self.session_id = session_id
        self.grace_until_ms = grace_until_ms
        # None: wait for the session, then read from its earliest (or latest) retained event.
        self.cursor: Cursor | None = start if isinstance(start, Cursor) else None
        self._word: StartWord = "earliest" if isinstance(start, Cursor) else start
        self._requested: str = str(start)
        self._hello_sent = False
        self._caught_up_sent = False
        self._reading = False  # a read has succeeded on this connection (lagged vs retention)
        self._seen_session = False
        self.more = False
        # Set while the reader waits (rules 2 and 4): read again by then at the latest.
        self.wait_until_ms = 0

    @property
    def caught_up(self) -> bool:
        return self._caught_up_sent

    def after(self) -> int:
        if self.cursor is not None:
            return self.cursor.position
        return U64_MAX if self._word == "latest" else 0

    def resume_after(self, cursor: Cursor) -> None:
        """Everything up to `cursor` was sent another way (a live group's shared frames):
        read on after it."""
        self.cursor = cursor

    def in_grace(self, now_ms: int) -> bool:
        return now_ms < self.grace_until_ms

    def feed(self, snapshot: Snapshot, now_ms: int) -> list[Output]:
        out: list[Output] = []
        head = snapshot.head
        if not self._hello_sent:
            self._hello_sent = True
            start = (
                self.cursor
                if self.cursor is not None or head is None
                else head.start_cursor(self._word)
            )
            out.append(Hello(start, head.tail_cursor if head else None))
        self.more = False
        self.wait_until_ms = 0
        if head is None:
            self._feed_unknown(out, now_ms)
            return out
        self._seen_session = True
        if self.cursor is None:
            self.cursor = head.start_cursor(self._word)
            self._word = "earliest"
        until = wait_until(head, self.cursor, now_ms, self.grace_until_ms)
        if until is not None:
            self.wait_until_ms = until  # the tail will reach the cursor: no gap, no frame
            return out
        gap = check(head, self.cursor, snapshot, reading=self._reading)
        if gap is not None:
            out.append(gap)
            assert gap.latest_cursor is not None
            self.cursor = gap.latest_cursor
            # Positioned at the tail, this connection is now reading: a later trim past
            # its position is `lagged`, not `retention`.
            self._reading = True
            self._mark_caught_up(out)
            return out
        self._reading = True
        page = contiguous(snapshot.events, self.cursor.position)
        if page:
            out.append(Events(page))
            last = page[-1]
            self.cursor = Cursor(head.incarnation, last.revision, last.position, self.session_id)
        if self.cursor.position >= head.tail:
            self._mark_caught_up(out)
        else:
            self.more = True
        return out

    def _feed_unknown(self, out: list[Output], now_ms: int) -> None:
        cursor = self.cursor
        if cursor is not None and cursor.position > 0:
            if self.in_grace(now_ms) and not self._seen_session:
                self.wait_until_ms = self.grace_until_ms
                return  # wait for the writer to re-send its window
            detail = GapDetail.SESSION_DELETED if self._seen_session else GapDetail.UNKNOWN_SESSION
            out.append(Gap.unknown(self.session_id, str(cursor), detail))
            self.cursor = None
            self._word = "earliest"
            self._seen_session = False  # one gap per deletion; then wait as for `earliest`
        elif self._seen_session:
            requested = str(cursor) if cursor is not None else self._requested
            out.append(Gap.unknown(self.session_id, requested, GapDetail.SESSION_DELETED))
            self.cursor = None
            self._word = "earliest"
            self._seen_session = False
        elif cursor is None and not self.in_grace(now_ms):
            # `latest` means what is appended from now on: for a session that does not
            # exist yet, that is all of it. (During the startup grace an unknown session
            # may be one whose writer is about to re-send old history, so keep the tail.)
            self._word = "earliest"
        self._mark_caught_up(out)

    def _mark_caught_up(self, out: list[Output]) -> None:
        if not self._caught_up_sent:
            self._caught_up_sent = True
            out.append(CaughtUp(self.cursor))


class MustWait(Exception):
    """A page cannot be answered yet (rules 2 and 4): the daemon is waiting for a writer
    to re-send its window, until `until_ms` at the latest (HTTP 503 `starting`)."""

    def __init__(self, until_ms: int) -> None:
        super().__init__(f"waiting for the writer to re-send its window until {until_ms}")
        self.until_ms = until_ms


def read_page(
    snapshot: Snapshot,
    start: Cursor | StartWord,
    session_id: str,
    *,
    now_ms: int = 0,
    grace_until_ms: int = 0,
) -> tuple[list[StoredEvent], Gap | None, Cursor | StartWord, bool]:
    """One HTTP replay page: (events, gap, next cursor, caught up); raises `MustWait`."""
    head = snapshot.head
    until = wait_until(head, start if isinstance(start, Cursor) else None, now_ms, grace_until_ms)
    if until is not None:
        raise MustWait(until)
    if head is None:
        if isinstance(start, Cursor) and start.position > 0:
            unknown = Gap.unknown(session_id, str(start), GapDetail.UNKNOWN_SESSION)
            return [], unknown, "earliest", False
        return [], None, start, True
    cursor = start if isinstance(start, Cursor) else head.start_cursor(start)
    gap = check(head, cursor, snapshot, reading=False)
    if gap is not None:
        assert gap.latest_cursor is not None
        return [], gap, gap.latest_cursor, True
    page = contiguous(snapshot.events, cursor.position)
    if page:
        last = page[-1]
        cursor = Cursor(head.incarnation, last.revision, last.position, session_id)
    return page, None, cursor, cursor.position >= head.tail
