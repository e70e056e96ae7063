"""The writer client's local window: one `SessionTable` plus what the sender must know.

The window is also the send buffer. The sender keeps, per session, the highest
position it has written to the current connection (`sent`) and the highest the
daemon has acknowledged (`acked`); whatever the window retains after `sent` is
what it sends next. So memory is bounded by the window's own retention limits,
and an event that retention trims before it was sent is exactly the hole the
daemon will serve as `writer_overflow`: it is counted here as dropped.

Plain synchronous code under one short lock, never held during I/O.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from ._log import Limits, SessionLog, SessionTable, StoredEvent
from ._rules import Snapshot
from ._wire import EventIn

# The daemon's answer to an old writer after a new one took the session over.
SUPERSEDED = "incarnation_superseded"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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


@dataclass(frozen=True, slots=True)
class Batch:
    session_id: str
    events: list[StoredEvent]
    last: int  # the highest position it covers (an event too large to send is skipped)
    restore_to: int | None = None  # part of restoring the window (ingest `restore_to`)


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
    appended: int = 0
    sent: int = 0
    acknowledged: int = 0
    duplicates: int = 0
    dropped: int = 0
    refused: int = 0


class LocalWindow:
    """Every session this client writes, its retention, and the sender's bookkeeping."""

    def __init__(self, incarnation: str, limits: Limits) -> None:
        self.incarnation = incarnation
        self.limits = limits
        self.counters = Counters()
        self._lock = threading.Lock()
        self._table = SessionTable(limits)
        self._out: dict[str, Outbox] = {}
        # Sessions with events after `sent`, in the order the sender should visit them.
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._watchers: dict[str, weakref.WeakSet[Watcher]] = {}
        self.newly_superseded: list[str] = []
        self.closed = False  # the client is closed: subscriptions end

    # -- the runtime's side ----------------------------------------------------

    def append(
        self, session_id: str, revision: int, payload: msgspec.Raw, turn_id: str | None
    ) -> tuple[int, int]:
        """Record one event; its (position, ts). Raises `AppendRefused` for an event
        larger than the window's `max_event_bytes`, having recorded nothing."""
        ts = now_ms()
        with self._lock:
            log = self._table.get(session_id)
            position = (log.tail if log is not None else 0) + 1
            event = EventIn(revision, payload, position, turn_id)
            self._table.append(session_id, self.incarnation, [event], ts)
            if session_id not in self._out:
                self._out[session_id] = Outbox()
            self._pending[session_id] = None
            self.counters.appended += 1
            watchers = list(self._watchers.get(session_id, ()))
        for watcher in watchers:
            watcher.wake()
        return position, ts

    def has_pending(self) -> bool:
        return bool(self._pending)

    def snapshot(self, session_id: str, after: int, limit: int) -> Snapshot:
        """The session's head and events after `after`, read together (age applied first)."""
        with self._lock:
            self._table.trim(session_id, now_ms())
            return Snapshot.of(self._table.get(session_id), after, limit, 2**62)

    def current_position(self, session_id: str, revision: int) -> int:
        """The last acknowledged position, kept before any held event of a newer revision:
        never ahead of the daemon, so a host reading it from here at worst replays more."""
        with self._lock:
            log = self._table.get(session_id)
            out = self._out.get(session_id)
            if log is None or out is None:
                return 0
            position = min(out.acked, log.tail)
            newer = [e.position for e in log.events if e.revision > revision]
            return min(position, min(newer) - 1) if newer else position

    def earliest(self, session_id: str) -> int | None:
        """The position before the oldest retained event (the tail if none); None if unknown."""
        with self._lock:
            log = self._table.get(session_id)
            if log is None:
                return None
            oldest = log.oldest
            return oldest.position - 1 if oldest else log.tail

    def trim(self, session_id: str) -> int:
        with self._lock:
            return self._table.trim(session_id, now_ms()) or 0

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
                log = self._table.get(session_id)
                if log is None:
                    del self._pending[session_id]
                    continue
                out = self._out[session_id]
                batch = self._take(log, out, limits)
                if out.sent >= log.tail:
                    del self._pending[session_id]
                else:
                    self._pending.move_to_end(session_id)
                if batch is not None:
                    self.counters.sent += len(batch.events)
                    return batch
            return None

    def _take(self, log: SessionLog, out: Outbox, limits: BatchLimits) -> Batch | None:
        """The session's next batch; advances `sent` past everything it covers."""
        if out.superseded:
            self._count(out, log.tail, refused=True)
            out.sent = log.tail
            return None
        oldest = log.oldest
        if oldest is None:
            out.sent = log.tail
            return None
        if oldest.position > out.sent + 1:
            # Retention trimmed events before they were sent here. A daemon instance
            # that already holds the session records the skipped positions as a hole and
            # says how many in its ack; one that holds nothing takes the first position
            # as the floor, so what no instance ever acknowledged is lost: count it now.
            if out.fresh:
                self._count(out, oldest.position - 1, refused=False)
            out.sent = oldest.position - 1
        out.fresh = False
        restoring = out.restore_to > out.sent
        events = log.after(
            out.sent,
            limits.restore_max_events if restoring else limits.max_events,
            limits.restore_max_bytes if restoring else limits.max_bytes,
        )
        sendable = [e for e in events if e.size <= limits.max_event_bytes]
        if len(sendable) < len(events):
            # Larger than the daemon takes: refused here rather than poisoning the batch.
            self.counters.refused += sum(
                1 for e in events if e.size > limits.max_event_bytes and e.position > out.counted
            )
            out.counted = max(out.counted, events[-1].position)
        out.sent = events[-1].position
        if not sendable:
            return None
        return Batch(log.session_id, sendable, out.sent, out.restore_to if restoring else None)

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
            out = self._out[batch.session_id]
            out.acked = max(out.acked, batch.last)
            out.ever_acked = max(out.ever_acked, batch.last)
            if out.restore_to and out.acked >= out.restore_to:
                out.restore_to = 0
            self.counters.acknowledged += len(batch.events)
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
        with self._lock:
            out = self._out[batch.session_id]
            out.acked = max(out.acked, batch.last)
            self.counters.refused += sum(1 for e in batch.events if e.position > out.counted)
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
            for session_id, out in self._out.items():
                if out.sent > out.acked:
                    out.uncertain = max(out.uncertain, out.sent)
                    out.sent = out.acked
                    self._pending[session_id] = None

    def new_instance(self) -> None:
        """The daemon lost its memory (or this is the first daemon): every session's
        retained window goes again, oldest first, in as many batches as it takes."""
        with self._lock:
            for session_id, out in self._out.items():
                log = self._table.get(session_id)
                if log is None or out.superseded:
                    continue
                oldest = log.oldest
                floor = oldest.position - 1 if oldest else log.tail
                # What retention trimmed and no instance acknowledged is lost now, those
                # in flight to the instance that is gone included.
                lost_from = max(out.counted, out.ever_acked)
                if floor > lost_from:
                    self.counters.dropped += floor - lost_from
                    out.counted = floor
                # Hosts may hold cursors into what an earlier instance had: restore it all.
                reached_a_daemon = max(out.ever_acked, out.uncertain, out.sent) > 0
                out.restore_to = log.tail if oldest and reached_a_daemon else 0
                out.sent = out.acked = floor
                out.uncertain = 0
                out.skipped_seen = 0  # a new data set counts its own holes
                out.fresh = True
                self._pending[session_id] = None

    def figures(self) -> Figures:
        """The window's figures now, counting drops the sender has not reached yet."""
        with self._lock:
            buffered = in_flight = unnoticed = 0
            for session_id, out in self._out.items():
                log = self._table.get(session_id)
                if log is None or out.superseded:
                    continue
                oldest = log.oldest
                floor = oldest.position - 1 if oldest else log.tail
                buffered += max(0, log.tail - max(out.acked, floor))
                in_flight += max(0, out.sent - out.acked)
                seen = max(out.sent, out.counted, out.ever_acked, out.uncertain)
                unnoticed += max(0, floor - seen)
            table = self._table
            retained = table.retained_events
            return Figures(buffered, in_flight, unnoticed, retained, table.retained_bytes)


@dataclass(frozen=True, slots=True)
class Figures:
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
    "Batch",
    "BatchLimits",
    "Counters",
    "Figures",
    "LocalWindow",
    "Outbox",
    "Watcher",
    "now_ms",
]
