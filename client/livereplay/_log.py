"""The bounded session log, its retention and the append rules (PROTOCOL.md sections 3 and 5).

Plain synchronous code with no I/O and no clock of its own: every call that
depends on time takes `now_ms`. The daemon's memory store and the runtime
client's local window are both thin shells around `SessionTable`.
"""

from __future__ import annotations

import bisect
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from typing import Final

from ._cursor import Cursor, valid_incarnation
from ._wire import U64_MAX, EventIn, EventRecord, encode_event, event_json_to_msgpack

MiB: Final = 1024 * 1024
# How many superseded incarnations a session remembers (to refuse their appends).
MAX_SUPERSEDED: Final = 64
# How many holes (skipped position ranges) a session remembers.
MAX_HOLES: Final = 256


@dataclass(frozen=True, slots=True)
class Limits:
    max_events_per_session: int = 2048
    max_bytes_per_session: int = 8 * MiB
    max_age_ms: int = 120_000
    memory_budget_bytes: int = 256 * MiB
    session_idle_ttl_ms: int = 3_600_000
    max_event_bytes: int = 1 * MiB
    max_sessions: int = 100_000
    # How long readers ahead of the tail wait for a writer restoring its window after
    # its last restore batch (rule 4, revision 1.1).
    restore_wait_ms: int = 10_000


class TrimCause(StrEnum):
    EVENTS = "events"
    BYTES = "bytes"
    AGE = "age"
    BUDGET = "budget"


@dataclass(slots=True)
class StoredEvent:
    position: int
    revision: int
    ts_ms: int
    data: bytes
    _packed: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def packed(self) -> bytes:
        """The msgpack encoding, made on first demand and kept."""
        if self._packed is None:
            self._packed = event_json_to_msgpack(self.data)
        return self._packed


class AppendRefused(Exception):
    """A batch refused as a whole; nothing was written."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AppendResult:
    accepted: int
    duplicates: int
    cursors: list[Cursor]
    tail_cursor: Cursor | None  # None only for an empty batch to an unknown session
    created: bool
    took_over: bool
    holes: int = 0  # positions this batch skipped: a `writer_overflow` hole before its events


@dataclass(slots=True)
class SessionLog:
    """One incarnation's retained window plus the metadata that outlives it."""

    session_id: str
    incarnation: str
    tail: int = 0
    latest_revision: int = 0
    last_append_ms: int = 0
    retained_bytes: int = 0
    events: deque[StoredEvent] = field(default_factory=deque)
    # Skipped position ranges (inclusive), oldest first: served as `writer_overflow`.
    holes: deque[tuple[int, int]] = field(default_factory=deque)
    # A writer is restoring its window up to this position (0: no restore under way);
    # readers with a cursor up to it wait for the tail until `restore_until_ms`.
    restoring_to: int = 0
    restore_until_ms: int = 0

    def cursor_at(self, position: int, revision: int | None = None) -> Cursor:
        rev = self.latest_revision if revision is None else revision
        return Cursor(self.incarnation, rev, position, self.session_id)

    @property
    def tail_cursor(self) -> Cursor:
        return self.cursor_at(self.tail)

    @property
    def oldest(self) -> StoredEvent | None:
        return self.events[0] if self.events else None

    def event_cursor(self, event: StoredEvent) -> Cursor:
        return self.cursor_at(event.position, event.revision)

    def after(self, position: int, limit: int, max_bytes: int) -> list[StoredEvent]:
        """Retained events with position > `position`: at most `limit`, and at most
        `max_bytes` of them unless the first alone is larger."""
        start = bisect.bisect_right(self.events, position, key=attrgetter("position"))
        page: list[StoredEvent] = []
        size = 0
        for i in range(start, min(start + limit, len(self.events))):
            event = self.events[i]
            size += event.size
            if page and size > max_bytes:
                break
            page.append(event)
        return page

    def in_hole(self, position: int) -> bool:
        return any(start <= position <= end for start, end in self.holes)

    def drop_oldest(self) -> StoredEvent:
        event = self.events.popleft()
        self.retained_bytes -= event.size
        oldest = self.events[0].position if self.events else self.tail + 1
        # A hole ending just before the oldest retained event still answers a reader
        # whose cursor is at the hole's start - 1: it missed nothing but the hole.
        while self.holes and self.holes[0][1] + 1 < oldest:
            self.holes.popleft()
        return event


def mark_restore(log: SessionLog, restore_to: int | None, until_ms: int) -> None:
    """Note a restore batch (a sliding deadline), and end the restore once the tail is there."""
    if restore_to is not None and log.tail < restore_to:
        log.restoring_to = max(log.restoring_to, restore_to)
        log.restore_until_ms = until_ms
    elif log.restoring_to and log.tail >= log.restoring_to:
        log.restoring_to = log.restore_until_ms = 0


@dataclass(slots=True)
class SessionMeta:
    """What survives a takeover: incarnations this session has superseded."""

    superseded: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def supersede(self, incarnation: str) -> None:
        self.superseded[incarnation] = None
        while len(self.superseded) > MAX_SUPERSEDED:
            self.superseded.popitem(last=False)


def new_incarnation() -> str:
    return uuid.uuid4().hex


class SessionTable:
    """Every session's log under per-session retention and one global memory budget.

    Sessions are kept in least-recently-appended order, so the budget trims the
    oldest events of the idlest sessions first.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._logs: OrderedDict[str, SessionLog] = OrderedDict()
        self._meta: dict[str, SessionMeta] = {}
        self.retained_bytes = 0
        self.retained_events = 0
        self.trimmed: dict[TrimCause, int] = dict.fromkeys(TrimCause, 0)

    def __len__(self) -> int:
        return len(self._logs)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._logs

    def get(self, session_id: str) -> SessionLog | None:
        return self._logs.get(session_id)

    def sessions(self, after: str | None = None) -> Iterator[SessionLog]:
        """Sessions in id order, starting after `after` (for paging)."""
        for session_id in sorted(self._logs):
            if after is None or session_id > after:
                yield self._logs[session_id]

    # -- writing -----------------------------------------------------------

    def append(
        self,
        session_id: str,
        incarnation: str | None,
        events: list[EventIn],
        now_ms: int,
        *,
        restore_to: int | None = None,
    ) -> AppendResult:
        """Apply one batch atomically: it is checked and encoded whole, then written whole.

        `restore_to` marks a batch of a writer re-sending its window (up to that
        position) to a daemon that lost it: until the tail reaches it, readers ahead of
        the tail wait instead of getting `ahead_of_tail`.
        """
        log = self._logs.get(session_id)
        self._check(session_id, incarnation, events)
        if events and log is None and len(self._logs) >= self.limits.max_sessions:
            raise AppendRefused(
                "too_many_sessions", f"the daemon holds its limit of {len(self._logs)} sessions"
            )
        if not events:
            return AppendResult(0, 0, [], log.tail_cursor if log else None, False, False)
        existed = log is not None
        fresh = log is None or (incarnation is not None and incarnation != log.incarnation)
        target_incarnation = incarnation or (log.incarnation if log else new_incarnation())
        tail = 0 if fresh or log is None else log.tail

        staged: list[StoredEvent | None] = []  # None marks a duplicate
        cursors: list[Cursor] = []
        for item in events:
            position = tail + 1 if item.position is None else item.position
            if position > U64_MAX:
                raise AppendRefused("invalid_event", "positions would pass 2^64-1")
            cursor = Cursor(target_incarnation, item.revision, position, session_id)
            cursors.append(cursor)
            if position <= tail:
                staged.append(None)
                continue
            record = EventRecord(
                session_id,
                target_incarnation,
                item.turn_id,
                item.revision,
                position,
                str(cursor),
                now_ms,
                item.payload,
            )
            stored = StoredEvent(position, item.revision, now_ms, encode_event(record))
            if stored.size > self.limits.max_event_bytes:
                raise AppendRefused(
                    "event_too_large",
                    f"an event's JSON encoding is larger than {self.limits.max_event_bytes} bytes",
                )
            staged.append(stored)
            tail = position

        if log is None or fresh:
            if log is not None:
                self._meta[session_id].supersede(log.incarnation)
                self._forget_events(log)
            log = self._create(session_id, target_incarnation)
        accepted = holes = 0
        for item_stored in staged:
            if item_stored is None:
                continue
            stored = item_stored
            if stored.position > log.tail + 1 and log.tail > 0:
                holes += stored.position - log.tail - 1
                log.holes.append((log.tail + 1, stored.position - 1))
                if len(log.holes) > MAX_HOLES:
                    log.holes.popleft()
            log.events.append(stored)
            log.retained_bytes += stored.size
            log.tail = stored.position
            log.latest_revision = stored.revision
            accepted += 1
        self.retained_bytes += sum(s.size for s in staged if s is not None)
        self.retained_events += accepted
        if accepted:
            log.last_append_ms = now_ms
            self._logs.move_to_end(session_id)
            self._enforce_session(log, now_ms)
            self._enforce_budget()
        mark_restore(log, restore_to, now_ms + self.limits.restore_wait_ms)
        return AppendResult(
            accepted,
            len(events) - accepted,
            cursors,
            log.tail_cursor,
            created=not existed,
            took_over=existed and fresh,
            holes=holes,
        )

    def _check(self, session_id: str, incarnation: str | None, events: list[EventIn]) -> None:
        if incarnation is not None:
            if not valid_incarnation(incarnation):
                raise AppendRefused(
                    "invalid_incarnation", "an incarnation is 1..64 characters of A-Z a-z 0-9 _ -"
                )
            meta = self._meta.get(session_id)
            if meta is not None and incarnation in meta.superseded:
                raise AppendRefused(
                    "incarnation_superseded", "a newer incarnation has taken over this session"
                )
            if any(e.position is None for e in events):
                raise AppendRefused(
                    "invalid_event", "with an incarnation, every event carries a position"
                )
        elif any(e.position is not None for e in events):
            raise AppendRefused(
                "invalid_event", "without an incarnation, no event carries a position"
            )
        if any(
            not 0 <= e.revision <= U64_MAX
            or (e.position is not None and not 1 <= e.position <= U64_MAX)
            for e in events
        ):
            raise AppendRefused(
                "invalid_event", "revision is an unsigned 64-bit integer, position one >= 1"
            )

    def _create(self, session_id: str, incarnation: str) -> SessionLog:
        log = SessionLog(session_id, incarnation)
        self._logs[session_id] = log
        self._meta.setdefault(session_id, SessionMeta())
        return log

    # -- retention ---------------------------------------------------------

    def _drop(self, log: SessionLog, cause: TrimCause) -> None:
        event = log.drop_oldest()
        self.retained_bytes -= event.size
        self.retained_events -= 1
        self.trimmed[cause] += 1

    def _enforce_session(self, log: SessionLog, now_ms: int) -> int:
        limits = self.limits
        before = len(log.events)
        while len(log.events) > limits.max_events_per_session:
            self._drop(log, TrimCause.EVENTS)
        while log.retained_bytes > limits.max_bytes_per_session:
            self._drop(log, TrimCause.BYTES)
        horizon = now_ms - limits.max_age_ms
        while log.events and log.events[0].ts_ms <= horizon:
            self._drop(log, TrimCause.AGE)
        return before - len(log.events)

    def _enforce_budget(self) -> None:
        if self.retained_bytes <= self.limits.memory_budget_bytes:
            return
        logs = iter(list(self._logs.values()))
        log = next(logs, None)
        while self.retained_bytes > self.limits.memory_budget_bytes and log is not None:
            if log.events:
                self._drop(log, TrimCause.BUDGET)
            else:
                log = next(logs, None)

    def _forget_events(self, log: SessionLog) -> None:
        self.retained_bytes -= log.retained_bytes
        self.retained_events -= len(log.events)
        log.events.clear()
        log.retained_bytes = 0

    def trim(self, session_id: str, now_ms: int) -> int | None:
        """Apply retention now; None for an unknown session."""
        log = self._logs.get(session_id)
        if log is None:
            return None
        return self._enforce_session(log, now_ms)

    def expire(self, now_ms: int) -> list[str]:
        """Age out old events everywhere and forget idle sessions; returns forgotten ids."""
        forgotten = []
        idle_horizon = now_ms - self.limits.session_idle_ttl_ms
        for log in list(self._logs.values()):
            self._enforce_session(log, now_ms)
            if log.last_append_ms <= idle_horizon:
                self.delete(log.session_id)
                forgotten.append(log.session_id)
        return forgotten

    def delete(self, session_id: str) -> bool:
        log = self._logs.pop(session_id, None)
        self._meta.pop(session_id, None)
        if log is None:
            return False
        self._forget_events(log)
        return True


__all__ = [
    "AppendRefused",
    "AppendResult",
    "Limits",
    "SessionLog",
    "SessionTable",
    "StoredEvent",
    "TrimCause",
]
