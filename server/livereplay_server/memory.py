"""The embedded default backend: every session log in this process's memory."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from livereplay.protocol import (
    AppendResult,
    Cursor,
    Limits,
    SessionLog,
    SessionTable,
    Snapshot,
    StoredEvent,
)
from livereplay.protocol.clock import Clock, now_ms
from livereplay.protocol.records import NewEvent
from livereplay.protocol.rules import Head, contiguous

from .metrics import StoreStats
from .store import ChangeFeed, SessionInfo, StoreUnavailable


def session_info(log: SessionLog) -> SessionInfo:
    head = Head.of(log)
    return SessionInfo(
        log.session_id,
        log.incarnation,
        head.tail_cursor,
        head.oldest,
        len(log.events),
        log.retained_bytes,
    )


class LogSource:
    """A session's log as the live fan-out reads it (fanout.LiveSource)."""

    __slots__ = ("_log",)

    def __init__(self, log: SessionLog) -> None:
        self._log = log

    @property
    def incarnation(self) -> str:
        return self._log.incarnation

    @property
    def tail(self) -> int:
        return self._log.tail

    @property
    def head(self) -> Cursor:
        return self._log.tail_cursor

    def page_after(self, position: int, limit: int, max_bytes: int) -> list[StoredEvent] | None:
        # A page stops before a hole: the reader's own path tells it as a gap.
        page = contiguous(self._log.after(position, limit, max_bytes), position)
        return page or None


class MemoryStore:
    def __init__(self, limits: Limits, clock: Clock = now_ms) -> None:
        self.table = SessionTable(limits)
        self.changes = ChangeFeed()
        self.instance_id = uuid.uuid4().hex
        self.instance_known = True
        self._clock = clock  # every time rule reads this one (tests drive it)
        self.data_since_ms = clock()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self.changes.notify_all()

    async def append(
        self,
        session_id: str,
        incarnation: str | None,
        events: Sequence[NewEvent],
        *,
        restore_to: int | None = None,
        instance: str | None = None,
    ) -> AppendResult:
        if instance is not None and instance != self.instance_id:
            raise StoreUnavailable("this daemon's memory is not the one the writer knew")
        result = self.table.append(
            session_id, incarnation, events, self._clock(), restore_to=restore_to
        )
        if result.accepted or result.took_over:
            self.changes.notify(session_id)
        self._tell_evicted()
        return result

    def _tell_evicted(self) -> None:
        """Readers of sessions the budget forgot get `session_deleted` on their next read."""
        evicted = self.table.evicted
        while evicted:
            self.changes.notify(evicted.pop())

    async def snapshot(self, session_id: str, after: int, limit: int, max_bytes: int) -> Snapshot:
        # Age is enforced on read too, so an expired event is never served.
        self.table.trim(session_id, self._clock())
        return Snapshot.of(self.table.get(session_id), after, limit, max_bytes)

    def live(self, session_id: str) -> LogSource | None:
        self.table.trim(session_id, self._clock())  # an expired event is never served live either
        log = self.table.get(session_id)
        return None if log is None else LogSource(log)

    async def info(self, session_id: str) -> SessionInfo | None:
        # A session's figures never count an expired event either (as Redis's read script).
        self.table.trim(session_id, self._clock())
        log = self.table.get(session_id)
        return session_info(log) if log else None

    async def trim(self, session_id: str) -> int | None:
        dropped = self.table.trim(session_id, self._clock())
        if dropped:
            self.changes.notify(session_id)
        return dropped

    async def delete(self, session_id: str) -> bool:
        deleted = self.table.delete(session_id)
        if deleted:
            self.changes.notify(session_id)
        return deleted

    async def list_sessions(
        self, after: str | None, limit: int, *, prefix: str | None = None
    ) -> list[SessionInfo]:
        page: list[SessionInfo] = []
        for log in self.table.sessions(after):
            if len(page) >= limit:
                break
            if prefix is not None and not log.session_id.startswith(prefix):
                # Ids under a prefix are contiguous in id order: past it, none follow.
                if log.session_id > prefix:
                    break
                continue
            self.table.trim(log.session_id, self._clock())
            page.append(session_info(log))
        return page

    async def ready(self) -> bool:
        return True

    def stats(self) -> StoreStats:
        table = self.table
        trimmed = {cause.value: n for cause, n in table.trimmed.items()}
        return StoreStats(
            len(table),
            table.retained_events,
            table.retained_bytes,
            trimmed,
            held_bytes=table.cost,
            sessions_evicted=table.sessions_evicted,
        )

    def sweep(self) -> None:
        """Age out events and forget idle sessions; readers of a forgotten one get a gap."""
        for session_id in self.table.expire(self._clock()):
            self.changes.notify(session_id)
        self._tell_evicted()
