"""The bounded session log, its retention and the append rules (PROTOCOL.md sections 3 and 5).

Plain synchronous code with no I/O and no clock of its own: every call that
depends on time takes `now_ms`. The daemon's memory store and the runtime
client's local window are both thin shells around `SessionTable`.
"""

from __future__ import annotations

import bisect
import hashlib
import uuid
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter
from typing import Final

from .constants import CURSOR_PREFIX, U64_MAX, MiB
from .cursor import Cursor, valid_incarnation
from .errors import AppendRefused
from .records import NewEvent, RecordEncoder, event_json_to_msgpack

# How many superseded incarnations a session remembers (to refuse their appends).
MAX_SUPERSEDED: Final = 64
# A session's count of skipped positions saturates here (where the Redis script's
# numbers stop being exact; holes can span 2^64 positions).
MAX_SKIPPED: Final = 2**53
# How many holes (skipped position ranges) a session remembers.
MAX_HOLES: Final = 256
# A session's columns let go of the slots of trimmed events once this many gathered.
COMPACT_AFTER: Final = 1024


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


# What holding things costs this process beyond their own bytes (CPython 3.11, 64-bit;
# tests/core/test_cost.py checks them against tracemalloc). The memory budget counts
# every byte a session holds: events, their msgpack copies and the session itself.
EVENT_COST: Final = 58  # its record's header, its list slot, its position, its share of runs
PACKED_COST: Final = 128  # a msgpack copy's header and dict entry (~90), and room the dict keeps
SESSION_COST: Final = 1400  # a SessionLog, its deque, its table entries, its SessionMeta
HOLE_COST: Final = 32  # two unsigned ints in a growing array
DIGEST_BYTES: Final = 8  # a superseded incarnation is remembered by a digest this long
SUPERSEDED_COST: Final = 12  # ... in a growing bytearray


class Ledger:
    """What a table's sessions hold in memory, in bytes, kept up to date as they change."""

    __slots__ = ("budget", "cost")

    def __init__(self, budget: int = 2**62) -> None:
        self.cost = 0
        self.budget = budget  # what the table may hold (Limits.memory_budget_bytes)


@dataclass(slots=True)
class StoredEvent:
    """One event: its position, revision, time and record (its JSON, as served).

    A session log does not keep these objects (see `Retained`); it hands them out
    for reading, and takes them in to append.
    """

    position: int
    revision: int
    ts_ms: int
    data: bytes
    _packed: bytes | None = None
    _log: SessionLog | None = None  # the session holding it, which keeps its msgpack copy

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def packed(self) -> bytes:
        """The msgpack encoding, made on first demand and kept (and paid for) by the log."""
        if self._packed is None:
            log = self._log
            if log is None:
                self._packed = event_json_to_msgpack(self.data)
            else:
                self._packed = log.events.packed(self.position, self.data, log)
        return self._packed


class Retained:
    """A session's retained events, oldest first, kept by column.

    Per event: its record in a list, its position in an array; revision and time in
    runs (a batch shares both). So an event costs little more than its record,
    where an object per event would add half as much again. msgpack copies are kept
    only for the events a msgpack reader asked for. Slots of events let go are
    released in bulk; `_base` counts them, so a run's index never moves.
    """

    __slots__ = (
        "_base",
        "_data",
        "_head",
        "_packed",
        "_packed_peak",
        "_positions",
        "_runs",
        "_size",
        "owner",
    )

    def __init__(self) -> None:
        self.owner: SessionLog | None = None  # the log whose events these are
        self._data: list[bytes] = []
        self._positions = array("Q")
        self._head = 0  # index of the oldest retained event in `_data`
        self._base = 0  # events released before `_data[0]`
        # (index of the first event, ts_ms, revision), oldest first; indices count
        # from the first event ever held (so `_base` + list index).
        self._runs: deque[tuple[int, int, int]] = deque()
        self._packed: dict[int, bytes] = {}  # position -> msgpack copy
        # A dict never gives back the room its deleted entries took: it is rebuilt once
        # it holds a quarter of what it once did.
        self._packed_peak = 0
        self._size = 0  # bytes of the retained records

    def __len__(self) -> int:
        return len(self._data) - self._head

    def __bool__(self) -> bool:
        return len(self._data) > self._head

    def __iter__(self) -> Iterator[StoredEvent]:
        for i in range(self._head, len(self._data)):
            yield self._event(i)

    def __getitem__(self, i: int) -> StoredEvent:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("no such retained event")
        return self._event(self._head + i)

    @property
    def size(self) -> int:
        return self._size

    def _event(self, i: int) -> StoredEvent:
        runs = self._runs
        at = bisect.bisect_right(runs, self._base + i, key=itemgetter(0)) - 1
        _, ts_ms, revision = runs[at]
        position = self._positions[i]
        packed = self._packed.get(position)
        return StoredEvent(position, revision, ts_ms, self._data[i], packed, self.owner)

    def first_position(self) -> int:
        return self._positions[self._head]

    def oldest_ts(self) -> int:
        return self._runs[0][1]  # runs before the oldest event's are let go with it

    def extend(self, staged: list[tuple[int, int, bytes]], ts_ms: int) -> int:
        """Retain events, (position, revision, record) in order, appended at `ts_ms`;
        the bytes of their records."""
        index = self._base + len(self._data)
        records = [data for _, _, data in staged]
        self._data += records
        self._positions.extend([position for position, _, _ in staged])
        size = sum(map(len, records))
        self._size += size
        runs = self._runs
        last = runs[-1] if runs else None
        for i, (_, revision, _) in enumerate(staged):
            if last is None or last[1] != ts_ms or last[2] != revision:
                last = (index + i, ts_ms, revision)
                runs.append(last)
        return size

    def popleft(self) -> tuple[int, int]:
        """Let the oldest event go: its position and the bytes it held (msgpack copy
        included)."""
        head = self._head
        data = self._data
        size = len(data[head])
        position = self._positions[head]
        packed = self._packed.pop(position, None) if self._packed else None
        if packed is not None and 4 * len(self._packed) < self._packed_peak:
            self._packed = dict(self._packed)
            self._packed_peak = len(self._packed)
        data[head] = b""
        self._size -= size
        head += 1
        runs = self._runs
        while len(runs) > 1 and runs[1][0] <= self._base + head:
            runs.popleft()
        if head >= COMPACT_AFTER and 2 * head >= len(data):
            del data[:head]
            del self._positions[:head]
            self._base += head
            head = 0
        self._head = head
        if not self:
            runs.clear()
        return position, size + (0 if packed is None else PACKED_COST + len(packed))

    def clear(self) -> None:
        self._base += len(self._data)
        self._data.clear()
        self._positions = array("Q")
        self._head = 0
        self._runs.clear()
        self._packed = {}
        self._packed_peak = 0
        self._size = 0

    def index_after(self, position: int) -> int:
        """The index of the first retained event with a position above `position`."""
        return bisect.bisect_right(self._positions, position, lo=self._head)

    def page(self, start: int, limit: int, max_bytes: int) -> list[StoredEvent]:
        """Events from index `start`: at most `limit`, and at most `max_bytes` of them
        unless the first alone is larger."""
        page: list[StoredEvent] = []
        size = 0
        for i in range(start, min(start + limit, len(self._data))):
            size += len(self._data[i])
            if page and size > max_bytes:
                break
            page.append(self._event(i))
        return page

    def packed(self, position: int, data: bytes, log: SessionLog) -> bytes:
        """The msgpack copy of a retained event, made once and kept while it is retained
        and the budget has room for it (a reader reading more than that between two
        sweeps gets copies made for it and not kept, rather than the daemon outgrowing
        its budget)."""
        packed = self._packed.get(position)
        if packed is None:
            packed = event_json_to_msgpack(data)
            cost = PACKED_COST + len(packed)
            if log.ledger.cost + cost > log.ledger.budget:
                return packed
            at = self.index_after(position - 1)
            if at < len(self._data) and self._positions[at] == position:
                self._packed[position] = packed
                self._packed_peak = max(self._packed_peak, len(self._packed))
                log.charge(cost)
        return packed


class Holes:
    """Skipped position ranges (inclusive), oldest first, two unsigned ints each."""

    __slots__ = ("_flat",)

    def __init__(self) -> None:
        self._flat = array("Q")

    def __len__(self) -> int:
        return len(self._flat) // 2

    def __iter__(self) -> Iterator[tuple[int, int]]:
        flat = self._flat
        return ((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))

    def append(self, hole: tuple[int, int]) -> None:
        self._flat.extend(hole)

    def first_end(self) -> int:
        return self._flat[1]

    def popleft(self) -> None:
        del self._flat[:2]


@dataclass(frozen=True, slots=True)
class AppendResult:
    accepted: int
    duplicates: int
    tail_cursor: Cursor | None  # None only for an empty batch to an unknown session
    created: bool
    took_over: bool
    holes: int = 0  # positions this batch skipped: a `writer_overflow` hole before its events
    # Positions skipped as holes since this log began, this batch's included: a writer
    # that lost an ack still learns of the holes it reported (from the next ack).
    skipped: int = 0
    incarnation: str = ""  # the batch's events', when it had any
    assigned_from: int = 0  # the position given to the first event that came without one
    events: Sequence[NewEvent] = ()  # the batch as sent (kept, not copied)

    @property
    def cursors(self) -> list[Cursor]:
        """One cursor per event sent, duplicates included: made on demand (an HTTP
        answer lists them; the ingest socket's ack does not)."""
        if self.tail_cursor is None:
            return []
        inc, session_id, first = self.incarnation, self.tail_cursor.session_id, self.assigned_from
        return [
            Cursor(inc, e.revision, first + i if e.position is None else e.position, session_id)
            for i, e in enumerate(self.events)
        ]

    def cursor_texts(self) -> list[str]:
        """`cursors` as text, without making the objects."""
        if self.tail_cursor is None:
            return []
        head = f"{CURSOR_PREFIX}{self.incarnation}:"
        session_id, first = self.tail_cursor.session_id, self.assigned_from
        return [
            f"{head}{e.revision}:{first + i if e.position is None else e.position}:{session_id}"
            for i, e in enumerate(self.events)
        ]


@dataclass(slots=True)
class SessionLog:
    """One incarnation's retained window plus the metadata that outlives it."""

    session_id: str
    incarnation: str
    tail: int = 0
    latest_revision: int = 0
    last_append_ms: int = 0
    retained_bytes: int = 0
    events: Retained = field(default_factory=Retained)
    # Skipped position ranges (inclusive), oldest first: served as `writer_overflow`.
    holes: Holes = field(default_factory=Holes)
    skipped: int = 0  # positions ever skipped as holes (outlives the bounded range list)
    # A writer is restoring its window up to this position (0: no restore under way);
    # readers with a cursor up to it wait for the tail until `restore_until_ms`.
    restoring_to: int = 0
    restore_until_ms: int = 0
    # What the session holds in memory: itself, its events, their msgpack copies.
    cost: int = 0
    ledger: Ledger = field(default_factory=Ledger)

    def __post_init__(self) -> None:
        self.events.owner = self

    def charge(self, delta: int) -> None:
        self.cost += delta
        self.ledger.cost += delta

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
        events = self.events
        return events.page(events.index_after(position), limit, max_bytes)

    def in_hole(self, position: int) -> bool:
        return any(start <= position <= end for start, end in self.holes)

    def add(self, staged: list[tuple[int, int, bytes]], ts_ms: int) -> int:
        """Retain a batch's new events, (position, revision, record) in order, after any
        hole before them was noted; the bytes of their records."""
        size = self.events.extend(staged, ts_ms)
        self.retained_bytes += size
        self.tail, self.latest_revision, _ = staged[-1]
        self.charge(EVENT_COST * len(staged) + size)
        return size

    def add_hole(self, start: int, end: int) -> None:
        self.holes.append((start, end))
        self.charge(HOLE_COST)
        if len(self.holes) > MAX_HOLES:
            self.holes.popleft()
            self.charge(-HOLE_COST)

    def drop_oldest(self) -> int:
        """Let the oldest retained event go; the bytes of its record."""
        events = self.events
        size = events.size
        _, held = events.popleft()
        size -= events.size
        self.retained_bytes -= size
        self.charge(-EVENT_COST - held)
        oldest = events.first_position() if events else self.tail + 1
        # A hole ending just before the oldest retained event still answers a reader
        # whose cursor is at the hole's start - 1: it missed nothing but the hole.
        while self.holes and self.holes.first_end() + 1 < oldest:
            self.holes.popleft()
            self.charge(-HOLE_COST)
        return size


def mark_restore(log: SessionLog, restore_to: int | None, until_ms: int) -> None:
    """Note a restore batch (a sliding deadline), and end the restore once the tail is there."""
    if restore_to is not None and log.tail < restore_to:
        log.restoring_to = max(log.restoring_to, restore_to)
        log.restore_until_ms = until_ms
    elif log.restoring_to and log.tail >= log.restoring_to:
        log.restoring_to = log.restore_until_ms = 0


@dataclass(slots=True)
class SessionMeta:
    """What survives a takeover: the incarnations this session has superseded, as 8-byte
    digests (a 2^-64 chance that a new incarnation is taken for an old one)."""

    superseded: bytearray = field(default_factory=bytearray)

    def __len__(self) -> int:
        return len(self.superseded) // DIGEST_BYTES

    def supersede(self, incarnation: str) -> None:
        self.superseded += _digest(incarnation)
        if len(self.superseded) > MAX_SUPERSEDED * DIGEST_BYTES:
            del self.superseded[:DIGEST_BYTES]

    def has_superseded(self, incarnation: str) -> bool:
        digest = _digest(incarnation)
        blob = self.superseded
        at = blob.find(digest)
        while at != -1:
            if at % DIGEST_BYTES == 0:
                return True
            at = blob.find(digest, at + 1)
        return False


def _digest(incarnation: str) -> bytes:
    return hashlib.blake2b(incarnation.encode(), digest_size=DIGEST_BYTES).digest()


def new_incarnation() -> str:
    return uuid.uuid4().hex


def check_batch(
    incarnation: str | None, events: Sequence[NewEvent], *, superseded: bool = False
) -> None:
    """Refuse a batch that breaks section 5's rules, before anything is written.

    Whether the incarnation was superseded is the only state it needs; the Redis
    backend's script knows that itself, so it calls this with the default.
    """
    if incarnation is not None:
        if not valid_incarnation(incarnation):
            raise AppendRefused(
                "invalid_incarnation", "an incarnation is 1..64 characters of A-Z a-z 0-9 _ -"
            )
        if superseded:
            raise AppendRefused(
                "incarnation_superseded", "a newer incarnation has taken over this session"
            )
        if any(e.position is None for e in events):
            raise AppendRefused(
                "invalid_event", "with an incarnation, every event carries a position"
            )
    elif any(e.position is not None for e in events):
        raise AppendRefused("invalid_event", "without an incarnation, no event carries a position")
    if any(
        not 0 <= e.revision <= U64_MAX
        or (e.position is not None and not 1 <= e.position <= U64_MAX)
        for e in events
    ):
        raise AppendRefused(
            "invalid_event", "revision is an unsigned 64-bit integer, position one >= 1"
        )


class SessionTable:
    """Every session's log under per-session retention and one global memory budget.

    Sessions are kept in least-recently-appended order, so the budget trims the
    oldest events of the idlest sessions first.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._logs: OrderedDict[str, SessionLog] = OrderedDict()
        # The sessions that hold events, least recently appended first: the budget's order.
        self._holding: OrderedDict[str, SessionLog] = OrderedDict()
        self._meta: dict[str, SessionMeta] = {}
        self.ledger = Ledger(limits.memory_budget_bytes)
        self.retained_bytes = 0
        self.retained_events = 0
        self.trimmed: dict[TrimCause, int] = dict.fromkeys(TrimCause, 0)
        # Sessions forgotten to keep to the budget, for the store to tell their readers.
        self.evicted: list[str] = []
        self.sessions_evicted = 0

    def __len__(self) -> int:
        return len(self._logs)

    @property
    def cost(self) -> int:
        """Bytes every session holds in memory: what the budget bounds."""
        return self.ledger.cost

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
        events: Sequence[NewEvent],
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
            skipped = log.skipped if log else 0
            return AppendResult(0, 0, log.tail_cursor if log else None, False, False, 0, skipped)
        existed = log is not None
        fresh = log is None or (incarnation is not None and incarnation != log.incarnation)
        target_incarnation = incarnation or (log.incarnation if log else new_incarnation())
        tail = 0 if fresh or log is None else log.tail

        records = RecordEncoder(session_id, target_incarnation, now_ms)
        max_event_bytes = self.limits.max_event_bytes
        assigned_from = tail + 1
        staged: list[tuple[int, int, bytes]] = []  # duplicates are left out
        for item in events:
            position = tail + 1 if item.position is None else item.position
            if position <= tail:
                continue
            if position > U64_MAX:
                raise AppendRefused("invalid_event", "positions would pass 2^64-1")
            data = records.encode(item.turn_id, item.revision, position, item.payload)
            if len(data) > max_event_bytes:
                raise AppendRefused(
                    "event_too_large",
                    f"an event's JSON encoding is larger than {max_event_bytes} bytes",
                )
            staged.append((position, item.revision, data))
            tail = position

        if log is None or fresh:
            if log is not None:
                self._meta[session_id].supersede(log.incarnation)
                self._forget(log)
            log = self._create(session_id, target_incarnation)
        holes = 0
        previous = log.tail
        for position, _, _ in staged:
            if position > previous + 1 and previous > 0:
                holes += position - previous - 1
                log.add_hole(previous + 1, position - 1)
            previous = position
        if staged:
            self.retained_bytes += log.add(staged, now_ms)
        accepted = len(staged)
        log.skipped = min(log.skipped + holes, MAX_SKIPPED)
        self.retained_events += accepted
        if accepted:
            log.last_append_ms = now_ms
            self._logs.move_to_end(session_id)
            self._holding[session_id] = log
            self._holding.move_to_end(session_id)
            self._enforce_session(log, now_ms)
            self._enforce_budget(keep=session_id)
        mark_restore(log, restore_to, now_ms + self.limits.restore_wait_ms)
        return AppendResult(
            accepted,
            len(events) - accepted,
            log.tail_cursor,
            created=not existed,
            took_over=existed and fresh,
            holes=holes,
            skipped=log.skipped,
            incarnation=target_incarnation,
            assigned_from=assigned_from,
            events=events,
        )

    def _check(self, session_id: str, incarnation: str | None, events: Sequence[NewEvent]) -> None:
        superseded = False
        if incarnation is not None and valid_incarnation(incarnation):
            meta = self._meta.get(session_id)
            log = self._logs.get(session_id)
            current = log is not None and log.incarnation == incarnation
            superseded = meta is not None and not current and meta.has_superseded(incarnation)
        check_batch(incarnation, events, superseded=superseded)

    def _create(self, session_id: str, incarnation: str) -> SessionLog:
        meta = self._meta.setdefault(session_id, SessionMeta())
        log = SessionLog(session_id, incarnation, ledger=self.ledger)
        base = SESSION_COST + len(session_id) + len(incarnation)
        log.charge(base + SUPERSEDED_COST * len(meta))
        self._logs[session_id] = log
        return log

    # -- retention ---------------------------------------------------------

    def _drop(self, log: SessionLog, cause: TrimCause) -> None:
        self.retained_bytes -= log.drop_oldest()
        self.retained_events -= 1
        self.trimmed[cause] += 1
        if not log.events:
            self._holding.pop(log.session_id, None)

    def _enforce_session(self, log: SessionLog, now_ms: int) -> int:
        limits = self.limits
        before = len(log.events)
        while len(log.events) > limits.max_events_per_session:
            self._drop(log, TrimCause.EVENTS)
        while log.retained_bytes > limits.max_bytes_per_session:
            self._drop(log, TrimCause.BYTES)
        horizon = now_ms - limits.max_age_ms
        while log.events and log.events.oldest_ts() <= horizon:
            self._drop(log, TrimCause.AGE)
        return before - len(log.events)

    def _enforce_budget(self, keep: str | None = None) -> None:
        """Within the memory budget: the oldest events of the least recently appended
        sessions go first; if that is not enough, the idlest sessions are forgotten
        whole (metadata outlives events, so this is the last resort); and last, the
        oldest events of `keep`, the session just appended to, which is never forgotten."""
        budget = self.limits.memory_budget_bytes
        ledger = self.ledger
        holding = self._holding
        while ledger.cost > budget:
            log = next(iter(holding.values()), None)
            if log is None or log.session_id == keep:
                break
            self._drop(log, TrimCause.BUDGET)
        while ledger.cost > budget:
            idlest = next((sid for sid in self._logs if sid != keep), None)
            if idlest is None:
                break
            self.delete(idlest)
            self.evicted.append(idlest)
            self.sessions_evicted += 1
        kept = holding.get(keep) if keep is not None else None
        while ledger.cost > budget and kept is not None and kept.events:
            self._drop(kept, TrimCause.BUDGET)

    def _forget(self, log: SessionLog) -> None:
        """Let go of a log: its events and everything it cost."""
        self.retained_bytes -= log.retained_bytes
        self.retained_events -= len(log.events)
        log.events.clear()
        log.retained_bytes = 0
        log.charge(-log.cost)
        self._holding.pop(log.session_id, None)

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
        # Readers' msgpack copies are charged as they are made: settle them here too.
        self._enforce_budget()
        return forgotten

    def delete(self, session_id: str) -> bool:
        log = self._logs.pop(session_id, None)
        self._meta.pop(session_id, None)
        if log is None:
            return False
        self._forget(log)
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
