"""The writer client's local window: per session, a ring of encoded events and the
sender's bookkeeping.

Each event is kept as its ingest encoding (docs/INGEST.md: a msgpack map with the
payload's JSON inside), made once at append; a batch is those bytes joined under a
header, so the sender does no per-event work. Positions are the writer's own and
consecutive, so an event's place in the ring follows from its position.

The window is also the send buffer. The sender keeps, per session, the highest
position it has written to the current connection (`sent`) and the highest the
daemon has acknowledged (`acked`); whatever the window retains after `sent` is
what it sends next. So memory is bounded by the window's own retention limits,
and an event that retention trims before it was sent is exactly the hole the
daemon will serve as `writer_overflow`: it is counted here as dropped.

Plain synchronous code under one short lock, never held during I/O. The clock is
passed in (`clock`), so tests drive retention by age without sleeping.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from operator import itemgetter
from typing import Final

import msgspec

from livereplay.protocol.clock import Clock, now_ms
from livereplay.protocol.cursor import Cursor
from livereplay.protocol.errors import AppendRefused
from livereplay.protocol.ingest import IngestEvent, encoder, event_decoder
from livereplay.protocol.records import RecordEncoder, record_size
from livereplay.protocol.rules import Head, Snapshot
from livereplay.protocol.session_log import COMPACT_AFTER, Limits, StoredEvent

# The daemon's answer to an old writer after a new one took the session over.
SUPERSEDED: Final = "incarnation_superseded"
# What one retained event costs beyond its encoding: its bytes' header and its slot.
RECORD_COST: Final = 48
# The most an event's record adds to its payload, given the sizes of its parts
# (`record_size` is exact; this bound lets most appends skip it).
_ENVELOPE_BOUND: Final = 200


@dataclass(slots=True)
class Outbox:
    """The sender's progress through one session."""

    sent: int = 0  # highest position written to the current connection
    acked: int = 0  # highest position the current daemon instance acknowledged
    ever_acked: int = 0  # highest position any daemon instance acknowledged
    counted: int = 0  # highest position already counted as dropped or refused
    # In flight when a connection was lost: the daemon may hold them, or not.
    uncertain: int = 0
    skipped_seen: int = 0  # the session log's skipped total, as the last ack said
    fresh: bool = True  # the current daemon instance has been sent nothing of this session
    # Restoring the window to a daemon instance that lost it, up to this position (0: not).
    restore_to: int = 0
    superseded: bool = False


@dataclass(slots=True)
class Ring:
    """One session's retained events, oldest first, and the sender's progress through it."""

    session_id: str
    out: Outbox = field(default_factory=Outbox)
    # The retained records and their append times are those from index `head` on; the
    # slots before it are let go in bulk.
    records: list[bytes] = field(default_factory=list)
    stamps: array[int] = field(default_factory=lambda: array("q"))
    head: int = 0
    first: int = 1  # the oldest retained event's position (tail + 1 when none is)
    tail: int = 0
    size: int = 0  # bytes of the retained records
    revision: int = 0  # of the last event appended
    margin: int = 0  # at most what a record adds to its payload (see `_check_size`)
    # Where the revision changes, oldest first: (first position, revision). The first
    # run may start before `first`.
    runs: deque[tuple[int, int]] = field(default_factory=deque)

    @property
    def count(self) -> int:
        return self.tail - self.first + 1

    def push(self, record: bytes, revision: int, ts_ms: int) -> None:
        self.records.append(record)
        self.stamps.append(ts_ms)
        self.tail += 1
        self.size += len(record)
        if not self.runs or revision != self.revision:
            self.runs.append((self.tail, revision))
        self.revision = revision

    def pop_oldest(self) -> int:
        """Let the oldest retained event go; its size."""
        records = self.records
        size = len(records[self.head])
        records[self.head] = b""
        self.head += 1
        self.first += 1
        self.size -= size
        if self.head >= COMPACT_AFTER and 2 * self.head >= len(records):
            del records[: self.head]
            del self.stamps[: self.head]
            self.head = 0
        runs = self.runs
        while len(runs) > 1 and runs[1][0] <= self.first:
            runs.popleft()
        return size

    def oldest_ts(self) -> int:
        return self.stamps[self.head]

    def ts_of(self, position: int) -> int:
        return self.stamps[self.head + position - self.first]

    def revision_of(self, position: int) -> int:
        runs = self.runs
        return runs[bisect.bisect_right(runs, position, key=itemgetter(0)) - 1][1]

    def after(self, position: int, limit: int, max_bytes: int) -> list[bytes]:
        """Retained records after `position`: at most `limit`, and at most `max_bytes` of
        them unless the first alone is larger."""
        start = self.head + max(0, position + 1 - self.first)
        page = self.records[start : start + limit]
        if sum(map(len, page)) <= max_bytes:
            return page
        fits = bisect.bisect_right(list(accumulate(map(len, page))), max_bytes)
        return page[: max(fits, 1)]

    def oldest_newer_than(self, revision: int) -> int | None:
        """The position of the oldest retained event of a revision above `revision`."""
        for start, rev in self.runs:
            if rev > revision:
                return start if start >= self.first else self.first
        return None


@dataclass(frozen=True, slots=True)
class Batch:
    session_id: str
    records: list[bytes]  # each event's ingest encoding, in position order
    last: int  # the highest position it covers (an event too large to send is skipped)
    restore_to: int | None = None  # part of restoring the window (ingest `restore_to`)

    @property
    def events(self) -> list[IngestEvent]:
        """The events decoded (for refusals and tests; the sender sends `records`)."""
        return [event_decoder.decode(r) for r in self.records]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one batch may hold: the client's own limits within the daemon's."""

    max_events: int
    max_bytes: int
    max_event_bytes: int
    # A window being restored goes in batches as large as the daemon allows.
    restore_max_events: int
    restore_max_bytes: int


@dataclass(slots=True)
class Counters:
    """The writer's running totals, one set per client: the window counts events, the
    machine (`writer/machine.py`) connections. `stats()` reads them without a lock."""

    appended: int = 0
    sent: int = 0
    acknowledged: int = 0
    duplicates: int = 0
    dropped: int = 0
    refused: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    window_resends: int = 0


class LocalWindow:
    """Every session this client writes, its retention, and the sender's bookkeeping."""

    def __init__(self, incarnation: str, limits: Limits, clock: Clock = now_ms) -> None:
        self.incarnation = incarnation
        self.limits = limits
        self.clock = clock
        self.counters = Counters()
        self._lock = threading.Lock()
        self._rings: dict[str, Ring] = {}
        # The sessions that retain events, least recently appended first: the budget's order.
        self._holding: OrderedDict[str, Ring] = OrderedDict()
        self._retained_events = 0
        self._retained_bytes = 0
        self._budget = limits.memory_budget_bytes
        self._latest: Ring | None = None  # the ring appended to last, last in `_holding`
        # Sessions with events after `sent`, in the order the sender should visit them.
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._watchers: dict[str, weakref.WeakSet[Watcher]] = {}
        self.newly_superseded: list[str] = []
        self.closed = False  # the client is closed: subscriptions end

    # -- the runtime's side ----------------------------------------------------

    def append(
        self, session_id: str, revision: int, payload: bytes | msgspec.Raw, turn_id: str | None
    ) -> tuple[int, int]:
        """Record one event (its payload's JSON); its (position, ts). Raises `AppendRefused`
        for an event whose record would be larger than `max_event_bytes` or a session
        beyond `max_sessions`, having recorded nothing."""
        data = payload if isinstance(payload, bytes) else bytes(payload)
        limits = self.limits
        ts = self.clock()
        with self._lock:
            # The common case is inlined: this runs once per event on the runtime's thread.
            ring = self._rings.get(session_id)
            if ring is None:
                ring = self._open(session_id)
            position = ring.tail + 1
            if len(data) + ring.margin > limits.max_event_bytes or turn_id is not None:
                self._check_size(session_id, turn_id, revision, position, data, ts)
            record = encoder.encode(IngestEvent(revision, data, position, turn_id))
            ring.push(record, revision, ts)
            size = len(record)
            self._retained_events += 1
            self._retained_bytes += size
            if (
                position - ring.first >= limits.max_events_per_session
                or ring.size > limits.max_bytes_per_session
                or ring.stamps[ring.head] <= ts - limits.max_age_ms
            ):
                self._enforce(ring, ts)
            if self._latest is not ring:  # the budget's order: least recently appended first
                self._holding[session_id] = ring
                self._holding.move_to_end(session_id)
                self._latest = ring
            if self._retained_bytes + RECORD_COST * self._retained_events > self._budget:
                self._enforce_budget()
            if session_id not in self._pending:
                self._pending[session_id] = None
            self.counters.appended += 1
            watchers = self._watchers.get(session_id)
            woken = list(watchers) if watchers else ()
        for watcher in woken:
            watcher.wake()
        return position, ts

    def _open(self, session_id: str) -> Ring:
        if len(self._rings) >= self.limits.max_sessions:
            raise AppendRefused(
                "too_many_sessions", f"the window holds its limit of {len(self._rings)} sessions"
            )
        ring = self._rings[session_id] = Ring(session_id)
        ring.margin = 2 * len(session_id) + 2 * len(self.incarnation) + _ENVELOPE_BOUND
        return ring

    def _check_size(
        self,
        session_id: str,
        turn_id: str | None,
        revision: int,
        position: int,
        data: bytes,
        ts: int,
    ) -> None:
        """The daemon stores the event's record (PROTOCOL.md section 2): refuse it here
        when that would be larger than it takes."""
        limit = self.limits.max_event_bytes
        bound = len(data) + self._rings[session_id].margin
        if turn_id is not None:
            bound += 6 * len(turn_id)
        if bound <= limit:
            return
        size = record_size(session_id, self.incarnation, turn_id, revision, position, ts, data)
        if size > limit:
            raise AppendRefused(
                "event_too_large", f"an event's JSON encoding is larger than {limit} bytes"
            )

    def _cost(self) -> int:
        return self._retained_bytes + RECORD_COST * self._retained_events

    def _drop(self, ring: Ring) -> None:
        self._retained_bytes -= ring.pop_oldest()
        self._retained_events -= 1
        if ring.count == 0:
            self._holding.pop(ring.session_id, None)
            if self._latest is ring:
                self._latest = None

    def _enforce(self, ring: Ring, now: int) -> int:
        """The session's own retention: events, bytes, age. How many it let go."""
        limits = self.limits
        before = ring.count
        while ring.count > limits.max_events_per_session:
            self._drop(ring)
        while ring.size > limits.max_bytes_per_session:
            self._drop(ring)
        horizon = now - limits.max_age_ms
        while ring.count and ring.oldest_ts() <= horizon:
            self._drop(ring)
        return before - ring.count

    def _enforce_budget(self) -> None:
        """Within the memory budget: the oldest events of the least recently appended
        sessions go first, and the session just appended to last."""
        budget = self.limits.memory_budget_bytes
        holding = self._holding
        while self._cost() > budget and holding:
            self._drop(next(iter(holding.values())))

    def knows(self, session_id: str) -> bool:
        """Whether the window holds the session (so its id was valid)."""
        return session_id in self._rings

    def has_pending(self) -> bool:
        return bool(self._pending)

    def snapshot(self, session_id: str, after: int, limit: int) -> Snapshot:
        """The session's head and events after `after`, read together (age applied first)."""
        with self._lock:
            ring = self._rings.get(session_id)
            if ring is None:
                return Snapshot(None)
            self._enforce(ring, self.clock())
            records = ring.after(after, limit, 2**62)
            start = max(after + 1, ring.first)
            events = [self._stored(ring, start + i, r) for i, r in enumerate(records)]
            oldest = None
            if ring.count:
                revision = ring.revision_of(ring.first)
                oldest = Cursor(self.incarnation, revision, ring.first, session_id)
            head = Head(session_id, self.incarnation, ring.tail, ring.revision, oldest)
            return Snapshot(head, events)

    def _stored(self, ring: Ring, position: int, record: bytes) -> StoredEvent:
        """A retained event as the daemon would store it, for reading the window here."""
        event = event_decoder.decode(record)
        ts = ring.ts_of(position)
        data = RecordEncoder(ring.session_id, self.incarnation, ts).encode(
            event.turn_id, event.revision, position, event.payload
        )
        return StoredEvent(position, event.revision, ts, data)

    def current_position(self, session_id: str, revision: int) -> int:
        """The last acknowledged position, kept before any held event of a newer revision:
        never ahead of the daemon, so a host reading it from here at worst replays more."""
        with self._lock:
            ring = self._rings.get(session_id)
            if ring is None:
                return 0
            position = min(ring.out.acked, ring.tail)
            newer = ring.oldest_newer_than(revision)
            return position if newer is None else min(position, newer - 1)

    def earliest(self, session_id: str) -> int | None:
        """The position before the oldest retained event (the tail if none); None if unknown."""
        with self._lock:
            ring = self._rings.get(session_id)
            return None if ring is None else ring.first - 1

    def trim(self, session_id: str) -> int:
        with self._lock:
            ring = self._rings.get(session_id)
            return 0 if ring is None else self._enforce(ring, self.clock())

    def watch(self, session_id: str, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.setdefault(session_id, weakref.WeakSet()).add(watcher)

    def unwatch(self, session_id: str, watcher: Watcher) -> None:
        with self._lock:
            watchers = self._watchers.get(session_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[session_id]

    def wake_all(self) -> None:
        with self._lock:
            watchers = [w for ws in self._watchers.values() for w in ws]
        for watcher in watchers:
            watcher.wake()

    # -- the sender's side -----------------------------------------------------

    def next_batch(self, limits: BatchLimits) -> Batch | None:
        """The next batch to send, visiting sessions in turn; None when all is sent."""
        with self._lock:
            while self._pending:
                session_id = next(iter(self._pending))
                ring = self._rings[session_id]
                batch = self._take(ring, limits)
                if ring.out.sent >= ring.tail:
                    del self._pending[session_id]
                else:
                    self._pending.move_to_end(session_id)
                if batch is not None:
                    self.counters.sent += len(batch.records)
                    return batch
            return None

    def _take(self, ring: Ring, limits: BatchLimits) -> Batch | None:
        """The session's next batch; advances `sent` past everything it covers."""
        out = ring.out
        if out.superseded:
            self._count(out, ring.tail, refused=True)
            out.sent = ring.tail
            return None
        if ring.count == 0:
            out.sent = ring.tail
            return None
        if ring.first > out.sent + 1:
            # Retention trimmed events before they were sent here. A daemon instance
            # that already holds the session records the skipped positions as a hole and
            # says how many in its ack; one that holds nothing takes the first position
            # as the floor, so what no instance ever acknowledged is lost: count it now.
            if out.fresh:
                self._count(out, ring.first - 1, refused=False)
            out.sent = ring.first - 1
        out.fresh = False
        restoring = out.restore_to > out.sent
        records = ring.after(
            out.sent,
            limits.restore_max_events if restoring else limits.max_events,
            limits.restore_max_bytes if restoring else limits.max_bytes,
        )
        first = out.sent + 1
        out.sent += len(records)
        if limits.max_event_bytes < self.limits.max_event_bytes:
            records = self._sendable(ring, first, records, limits.max_event_bytes)
            if not records:
                return None
        return Batch(ring.session_id, records, out.sent, out.restore_to if restoring else None)

    def _sendable(self, ring: Ring, first: int, records: list[bytes], limit: int) -> list[bytes]:
        """The records the daemon takes (its `max_event_bytes` is below the window's):
        larger ones are refused here rather than poisoning the batch."""
        out = ring.out
        sendable = []
        for position, record in enumerate(records, first):
            event = event_decoder.decode(record)
            ts = ring.ts_of(position)
            size = record_size(
                ring.session_id, self.incarnation, event.turn_id, event.revision, position, ts,
                event.payload,
            )  # fmt: skip
            if size <= limit:
                sendable.append(record)
            elif position > out.counted:
                self.counters.refused += 1
        out.counted = max(out.counted, out.sent)
        return sendable

    def _count(self, out: Outbox, through: int, *, refused: bool) -> None:
        """Count the positions after any that may have reached a daemon, through `through`,
        as lost (once each)."""
        start = max(out.sent, out.counted, out.ever_acked, out.uncertain)
        if through > start:
            if refused:
                self.counters.refused += through - start
            else:
                self.counters.dropped += through - start
        out.counted = max(out.counted, through)

    def acknowledged(
        self, batch: Batch, duplicates: int, holes: int, skipped: int | None = None
    ) -> None:
        """The daemon holds the batch; `holes` positions before it it never received, and
        `skipped` positions the session's log has skipped since it began (None: not said)."""
        with self._lock:
            out = self._rings[batch.session_id].out
            out.acked = max(out.acked, batch.last)
            out.ever_acked = max(out.ever_acked, batch.last)
            if out.restore_to and out.acked >= out.restore_to:
                out.restore_to = 0
            self.counters.acknowledged += len(batch.records)
            self.counters.duplicates += duplicates
            if skipped is None:
                self.counters.dropped += holes
                return
            # The total covers holes reported in acks that never arrived (a daemon died
            # after applying the batch). Lower than what was seen: the log began again.
            seen = out.skipped_seen if skipped >= out.skipped_seen else 0
            self.counters.dropped += skipped - seen
            out.skipped_seen = skipped

    def refused(self, batch: Batch, code: str) -> None:
        """A final refusal: the batch will never be accepted, so it is not sent again."""
        positions = [e.position or 0 for e in batch.events]
        with self._lock:
            out = self._rings[batch.session_id].out
            out.acked = max(out.acked, batch.last)
            self.counters.refused += sum(1 for p in positions if p > out.counted)
            out.counted = max(out.counted, batch.last)
            if out.restore_to and out.acked >= out.restore_to:
                out.restore_to = 0
            if code == SUPERSEDED and not out.superseded:
                out.superseded = True
                self.newly_superseded.append(batch.session_id)
                self._pending[batch.session_id] = None

    def connection_lost(self) -> None:
        """What was in flight is sent again from the last acknowledged position."""
        with self._lock:
            for session_id, ring in self._rings.items():
                out = ring.out
                if out.sent > out.acked:
                    out.uncertain = max(out.uncertain, out.sent)
                    out.sent = out.acked
                    self._pending[session_id] = None

    def new_instance(self) -> None:
        """The daemon lost its memory (or this is the first daemon): every session's
        retained window goes again, oldest first, in as many batches as it takes."""
        with self._lock:
            for session_id, ring in self._rings.items():
                out = ring.out
                if out.superseded:
                    continue
                floor = ring.first - 1
                # What retention trimmed and no instance acknowledged is lost now, those
                # in flight to the instance that is gone included.
                lost_from = max(out.counted, out.ever_acked)
                if floor > lost_from:
                    self.counters.dropped += floor - lost_from
                    out.counted = floor
                # Hosts may hold cursors into what an earlier instance had: restore it all.
                reached_a_daemon = max(out.ever_acked, out.uncertain, out.sent) > 0
                out.restore_to = ring.tail if ring.count and reached_a_daemon else 0
                out.sent = out.acked = floor
                out.uncertain = 0
                out.skipped_seen = 0  # a new data set counts its own holes
                out.fresh = True
                self._pending[session_id] = None

    def backlog(self) -> Backlog:
        """What the window holds now, counting drops the sender has not reached yet."""
        with self._lock:
            buffered = in_flight = unnoticed = 0
            for ring in self._rings.values():
                out = ring.out
                if out.superseded:
                    continue
                floor = ring.first - 1
                buffered += max(0, ring.tail - max(out.acked, floor))
                in_flight += max(0, out.sent - out.acked)
                seen = max(out.sent, out.counted, out.ever_acked, out.uncertain)
                unnoticed += max(0, floor - seen)
            retained = self._retained_events
            return Backlog(buffered, in_flight, unnoticed, retained, self._retained_bytes)


@dataclass(frozen=True, slots=True)
class Backlog:
    """The window's contents at one moment (the running totals are `Counters`)."""

    buffered: int  # retained and not yet acknowledged
    in_flight: int  # sent on the current connection and not yet acknowledged (retained or not)
    unnoticed_drops: int  # trimmed before any daemon had them, not yet counted in `dropped`
    retained_events: int
    retained_bytes: int


class Watcher:
    """A subscription's wake-up hook, called after an append to its session."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def wake(self) -> None:
        self._wake()


__all__ = [
    "Backlog",
    "Batch",
    "BatchLimits",
    "Counters",
    "LocalWindow",
    "Outbox",
    "Ring",
    "Watcher",
]
