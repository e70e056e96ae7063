"""Model-based test: `SessionTable` + `ReadProgress` + `read_page` against the reference
model (tests/conformance/model.py), with the memory budget and idle expiry, which only
the in-memory table applies exactly (the stores are checked in tests/conformance)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import settings
from hypothesis.stateful import invariant, rule

from livereplay.protocol import AppendResult, SessionTable, Snapshot
from livereplay.protocol.records import NewEvent
from livereplay.protocol.session_log import EVENT_COST, HOLE_COST, SESSION_COST, SUPERSEDED_COST
from tests.conformance.model import LIMITS as SHARED_LIMITS
from tests.conformance.model import (
    MAX_BYTES,
    MAX_EVENTS,
    LogModel,
    Reference,
    decoded,
    held,
)

IDLE_TTL = 3000
# Room for two sessions' own cost (with superseded incarnations and a few holes) and
# about three events: a third session is over it, and sessions are forgotten.
BUDGET = 2 * (SESSION_COST + 1 + 32 + 8 * SUPERSEDED_COST + 2 * HOLE_COST) + 3 * (EVENT_COST + 300)
LIMITS = dataclasses.replace(
    SHARED_LIMITS, memory_budget_bytes=BUDGET, session_idle_ttl_ms=IDLE_TTL
)


class LogAndReaders(LogModel):
    def __init__(self) -> None:
        super().__init__(Reference(BUDGET, IDLE_TTL))
        self.table = SessionTable(LIMITS)

    def write(
        self, sid: str, inc: str | None, events: list[NewEvent], restore_to: int | None
    ) -> AppendResult:
        return self.table.append(sid, inc, events, self.now, restore_to=restore_to)

    def read(self, sid: str, after: int, limit: int, max_bytes: int) -> Snapshot:
        return Snapshot.of(self.table.get(sid), after, limit, max_bytes)

    def backend_trim(self, sid: str) -> int | None:
        return self.table.trim(sid, self.now)

    def backend_delete(self, sid: str) -> bool:
        return self.table.delete(sid)

    @rule()
    def expire(self) -> None:
        assert sorted(self.table.expire(self.now)) == sorted(self.ref.expire(self.now))

    def state(self) -> Any:
        return (
            {
                log.session_id: (
                    log.incarnation,
                    log.tail,
                    log.latest_revision,
                    [(e.position, e.data) for e in log.events],
                )
                for log in self.table.sessions()
            },
            self.table.retained_bytes,
            self.table.retained_events,
        )

    def check_agreement(self) -> None:
        assert sorted(log.session_id for log in self.table.sessions()) == sorted(self.ref.sessions)
        for sid, session in self.ref.sessions.items():
            log = self.table.get(sid)
            assert log is not None
            events = [(decoded(e.data), e.size) for e in log.events]
            assert (log.incarnation, log.tail, log.latest_revision, events) == held(session)

    @invariant()
    def accounting_and_bounds_hold(self) -> None:
        logs = list(self.table.sessions())
        for log in logs:
            assert log.retained_bytes == sum(e.size for e in log.events)
            assert len(log.events) <= MAX_EVENTS and log.retained_bytes <= MAX_BYTES
        assert self.table.retained_bytes == sum(log.retained_bytes for log in logs)
        assert self.table.retained_events == sum(len(log.events) for log in logs)
        assert self.table.cost == self.ref.total_cost() <= BUDGET
        assert self.table.evicted == self.ref.evicted


LogAndReaders.TestCase.settings = settings(max_examples=500, stateful_step_count=60, deadline=None)
test_log_and_readers = LogAndReaders.TestCase
