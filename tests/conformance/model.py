"""The reference model of a session store, and the state machine that checks a backend
against it (tests/core/test_model.py: `SessionTable`; tests/conformance/test_model.py:
every `Store` backend).

The reference is written from PROTOCOL.md alone, with plain data: per session a dict of
every position accepted under the current incarnation, the retained suffix, the tail,
the floor (first accepted position) and the superseded incarnations. Holes are the
positions between floor and tail that were never accepted. Retention is stated as "the
longest suffix within the per-session bounds", then the global budget takes the oldest
events of the least recently appended sessions.

Besides agreeing with the reference, every subscription's output stream must hold the
connection guarantees of section 4: no event twice, none out of order, no position
skipped without a gap in its place, and every event one that was accepted under the
incarnation it carries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from livereplay import AppendRefused, Cursor, Limits
from livereplay.protocol import AppendResult, ReadProgress, Snapshot
from livereplay.protocol.records import EventIn, NewEvent
from livereplay.protocol.rules import CaughtUp, Events, Gap, Hello, MustWait, Output, read_page
from livereplay.protocol.session_log import (
    EVENT_COST,
    HOLE_COST,
    MAX_HOLES,
    MAX_SKIPPED,
    MAX_SUPERSEDED,
    SESSION_COST,
    SUPERSEDED_COST,
)

U64_MAX = 2**64 - 1
SESSIONS = ["a", "b", "c"]
# Small bounds, so retention by count, bytes and age happens often.
MAX_EVENTS = 6
MAX_BYTES = 900
MAX_AGE = 400
MAX_EVENT = 350
RESTORE_WAIT = 500
# The bounds every run shares; the table's own run adds a budget and idle expiry.
LIMITS = Limits(
    max_events_per_session=MAX_EVENTS,
    max_bytes_per_session=MAX_BYTES,
    max_age_ms=MAX_AGE,
    max_event_bytes=MAX_EVENT,
    restore_wait_ms=RESTORE_WAIT,
)
UUID_LEN = 32  # a daemon-made incarnation (uuid4 hex), for sizing a batch that is refused

# -- the reference model -----------------------------------------------------------


def event_size(sid: str, inc: str, rev: int, pos: int, ts: int, payload: str) -> int:
    """Section 2: an event's size is the length of its JSON encoding."""
    record = {
        "session_id": sid,
        "replay_incarnation_id": inc,
        "turn_id": None,
        "revision": rev,
        "position": pos,
        "cursor": f"lashsc2:{inc}:{rev}:{pos}:{sid}",
        "ts": ts,
        "payload": payload,
    }
    return len(json.dumps(record, separators=(",", ":")).encode())


@dataclass
class RefEvent:
    position: int
    revision: int
    ts: int
    payload: str
    size: int


@dataclass
class RefSession:
    sid: str
    incarnation: str
    floor: int
    tail: int = 0
    latest_revision: int = 0
    skipped: int = 0  # positions skipped as holes since this log began (saturating)
    last_append: int = 0
    accepted: dict[int, RefEvent] = field(default_factory=dict)  # never forgotten
    retained: list[int] = field(default_factory=list)  # a suffix of sorted(accepted)
    # A writer restoring its window up to this position, until then (rule 4, rev 1.1).
    restoring_to: int = 0
    restore_until: int = 0

    def cursor(self, position: int, revision: int | None = None) -> Cursor:
        rev = self.latest_revision if revision is None else revision
        return Cursor(self.incarnation, rev, position, self.sid)

    @property
    def tail_cursor(self) -> Cursor:
        return self.cursor(self.tail)

    @property
    def oldest_cursor(self) -> Cursor | None:
        if not self.retained:
            return None
        oldest = self.accepted[self.retained[0]]
        return self.cursor(oldest.position, oldest.revision)

    def start(self, word: str) -> Cursor:
        """`earliest`: just before the oldest retained event; `latest`: the tail."""
        if word == "latest" or not self.retained:
            return self.tail_cursor
        return self.cursor(self.retained[0] - 1)

    def waits(self, cursor: Cursor, now: int, in_grace: bool) -> bool:
        """Rule 4, revision 1.1: a cursor ahead of the tail waits for the writer's window
        during the startup grace, or while a restore that will reach it is under way."""
        if cursor.incarnation != self.incarnation or cursor.position <= self.tail:
            return False
        return in_grace or (cursor.position <= self.restoring_to and now < self.restore_until)

    def holes(self) -> list[tuple[int, int]]:
        """The skipped runs a session still answers for: those ending no more than one
        below the oldest retained event (the tail + 1 when none is), the last 256."""
        oldest = self.retained[0] if self.retained else self.tail + 1
        runs: list[tuple[int, int]] = []
        previous = None
        for p in sorted(self.accepted):
            if previous is not None and p > previous + 1:
                runs.append((previous + 1, p - 1))
            previous = p
        return [r for r in runs if r[1] + 1 >= oldest][-MAX_HOLES:]

    def cost(self, superseded: int) -> int:
        """Section 3's budget: every byte the session holds (events, metadata)."""
        events = sum(EVENT_COST + self.accepted[p].size for p in self.retained)
        remembered = min(superseded, MAX_SUPERSEDED) * SUPERSEDED_COST
        base = SESSION_COST + len(self.sid) + len(self.incarnation) + remembered
        return base + events + HOLE_COST * len(self.holes())

    def is_hole(self, position: int) -> bool:
        return self.floor < position < self.tail and position not in self.accepted

    def rule(self, cursor: Cursor, reading: bool) -> tuple[str, str] | None:
        """Rules 3 to 5 straight from the table; None is rule 6."""
        p = cursor.position
        if cursor.incarnation != self.incarnation:
            return ("unavailable", "incarnation_changed")
        if p > self.tail:
            return ("unavailable", "ahead_of_tail")
        if p == self.tail or (p + 1) in self.retained:
            return None
        # Trimmed. A hole when p+1 was never received and nothing real is lost before
        # the next accepted event (it is retained); otherwise history went.
        following = min(q for q in self.accepted if q > p)
        if self.is_hole(p + 1) and following in self.retained:
            return ("trimmed", "writer_overflow")
        return ("trimmed", "lagged" if reading else "retention")

    def page(self, after: int, limit: int, max_bytes: int) -> list[RefEvent]:
        """Rule 6, one page: the events at after+1, after+2, ... A page ends before a
        hole, which the next read reports as a gap (never skipped silently)."""
        out: list[RefEvent] = []
        size = 0
        position = after + 1
        while position in self.retained and len(out) < limit:
            event = self.accepted[position]
            if out and size + event.size > max_bytes:
                break
            out.append(event)
            size += event.size
            position += 1
        return out

    def gap(self, requested: Cursor, verdict: tuple[str, str]) -> tuple[Any, ...]:
        return (
            "gap",
            self.sid,
            str(requested),
            self.tail_cursor,
            self.latest_revision,
            *verdict,
            self.oldest_cursor,
        )

    def enforce(self, now: int) -> None:
        """Keep the longest suffix within the count, byte and age bounds."""
        kept: list[int] = []
        size = 0
        bound = ""
        for position in reversed(self.retained):
            ref_event = self.accepted[position]
            if len(kept) == MAX_EVENTS:
                bound = "events"
            elif size + ref_event.size > MAX_BYTES:
                bound = "bytes"
            elif ref_event.ts <= now - MAX_AGE:
                bound = "age"
            if bound:
                event(f"retention: by {bound}")
                break
            kept.append(position)
            size += ref_event.size
        self.retained = kept[::-1]


class Refused(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


@dataclass
class RefResult:
    accepted: int
    duplicates: int
    cursors: list[Cursor]
    tail_cursor: Cursor
    holes: int
    skipped: int


class Reference:
    """`budget`: the memory budget's bytes (section 3); `idle_ttl`: how long a session
    outlives its last append, in ms."""

    def __init__(self, budget: int, idle_ttl: int) -> None:
        self.budget = budget
        self.idle_ttl = idle_ttl
        self.sessions: dict[str, RefSession] = {}
        self.superseded: dict[str, list[str]] = {}  # oldest first
        self.recency: list[str] = []  # least recently appended first
        # Every event ever accepted, by (session, incarnation, position): incarnation
        # names are never reused in this test, so this is what a reader may receive.
        self.ever: dict[tuple[str, str, int], RefEvent] = {}
        self.evicted: list[str] = []

    def total_bytes(self) -> int:
        return sum(s.accepted[p].size for s in self.sessions.values() for p in s.retained)

    def total_cost(self) -> int:
        return sum(s.cost(len(self.superseded.get(sid, []))) for sid, s in self.sessions.items())

    def append(
        self,
        sid: str,
        inc: str | None,
        items: list[tuple[int | None, int, str]],
        now: int,
        daemon_inc: str,
        restore_to: int | None = None,
    ) -> RefResult | None:
        """Section 5. `daemon_inc` is the incarnation the daemon makes for a new session;
        `restore_to` marks a batch re-sending a writer's window up to that position."""
        session = self.sessions.get(sid)
        if inc is not None:
            if inc in self.superseded.get(sid, []):
                raise Refused("incarnation_superseded")
            if any(pos is None for pos, _, _ in items):
                raise Refused("invalid_event")
        elif any(pos is not None for pos, _, _ in items):
            raise Refused("invalid_event")
        if not items:
            return None
        fresh = session is None or (inc is not None and inc != session.incarnation)
        target = inc if inc is not None else (session.incarnation if session else daemon_inc)
        tail = 0 if fresh or session is None else session.tail
        new: list[RefEvent] = []
        cursors = []
        for pos, rev, payload in items:
            position = tail + 1 if pos is None else pos
            cursors.append(Cursor(target, rev, position, sid))
            if position <= tail:
                continue  # a duplicate, trimmed or not
            event = RefEvent(
                position, rev, now, payload, event_size(sid, target, rev, position, now, payload)
            )
            if event.size > MAX_EVENT:
                raise Refused("event_too_large")
            new.append(event)
            tail = position
        if fresh:
            if session is not None:
                self.superseded.setdefault(sid, []).append(session.incarnation)
            session = RefSession(sid, target, floor=new[0].position)
            self.sessions[sid] = session
        assert session is not None
        holes = 0
        for event in new:
            if session.tail > 0:
                holes += event.position - session.tail - 1
            session.accepted[event.position] = event
            session.retained.append(event.position)
            session.tail = event.position
            session.latest_revision = event.revision
            self.ever[(sid, target, event.position)] = event
        session.skipped = min(session.skipped + holes, MAX_SKIPPED)
        if new:
            session.last_append = now
            if sid in self.recency:
                self.recency.remove(sid)
            self.recency.append(sid)
            session.enforce(now)
            self.enforce_budget(keep=sid)
        if restore_to is not None and session.tail < restore_to:
            session.restoring_to = max(session.restoring_to, restore_to)
            session.restore_until = now + RESTORE_WAIT
        elif session.restoring_to and session.tail >= session.restoring_to:
            session.restoring_to = session.restore_until = 0
        return RefResult(
            len(new), len(items) - len(new), cursors, session.tail_cursor, holes, session.skipped
        )

    def enforce_budget(self, keep: str | None = None) -> None:
        """The oldest events of the idlest sessions first, then the idlest sessions whole,
        then the oldest events of the session just appended to (never forgotten)."""
        while self.total_cost() > self.budget:
            idle = [s for s in self.recency if s != keep and self.sessions[s].retained]
            if idle:
                self.sessions[idle[0]].retained.pop(0)
                event("budget: an idle session's oldest event")
                continue
            others = [s for s in self.recency if s != keep]
            if others:
                self.evicted.append(others[0])
                self.delete(others[0])
                event("budget: an idle session forgotten")
                continue
            if keep is None or not self.sessions[keep].retained:
                return
            self.sessions[keep].retained.pop(0)
            event("budget: the appended session's oldest event")

    def trim(self, sid: str, now: int) -> int | None:
        """Retention now: how many events it dropped; None for an unknown session."""
        session = self.sessions.get(sid)
        if session is None:
            return None
        before = len(session.retained)
        session.enforce(now)
        return before - len(session.retained)

    def delete(self, sid: str) -> None:
        self.sessions.pop(sid, None)
        self.superseded.pop(sid, None)
        if sid in self.recency:
            self.recency.remove(sid)

    def expire(self, now: int) -> list[str]:
        gone = []
        for sid in list(self.sessions):
            self.sessions[sid].enforce(now)
            if self.sessions[sid].last_append <= now - self.idle_ttl:
                self.delete(sid)
                gone.append(sid)
        self.enforce_budget()
        return gone


@dataclass
class RefReader:
    """One connection's reader, following section 4 and the frames of section 7."""

    sid: str
    cursor: Cursor | None
    word: str
    grace_until: int
    hello_sent: bool = False
    caught_up_sent: bool = False
    seen: bool = False
    reading: bool = False
    more: bool = False

    def _caught_up(self, out: list[Any]) -> None:
        if not self.caught_up_sent:
            self.caught_up_sent = True
            out.append(("caught_up", self.cursor))

    def _restart_as_earliest(self) -> None:
        self.cursor, self.word, self.seen = None, "earliest", False

    def feed(self, ref: Reference, now: int, limit: int, max_bytes: int) -> list[Any]:
        out: list[Any] = []
        session = ref.sessions.get(self.sid)
        in_grace = now < self.grace_until
        if not self.hello_sent:
            self.hello_sent = True
            start = self.cursor
            if start is None and session is not None:
                start = session.start(self.word)
            out.append(("hello", start, session.tail_cursor if session else None))
        self.more = False
        if session is None:
            if self.seen:
                requested = str(self.cursor)
                out.append(
                    ("gap", self.sid, requested, None, None, "unavailable", "session_deleted", None)
                )
                self._restart_as_earliest()
            elif self.cursor is not None and self.cursor.position > 0:
                if in_grace:
                    return out  # wait for the writer to re-send its window
                out.append(
                    (
                        "gap",
                        self.sid,
                        str(self.cursor),
                        None,
                        None,
                        "unavailable",
                        "unknown_session",
                        None,
                    )
                )
                self._restart_as_earliest()
            elif self.cursor is None and not in_grace:
                self.word = "earliest"  # all of a session yet to exist is "from now on"
            self._caught_up(out)
            return out
        self.seen = True
        if self.cursor is None:
            self.cursor = session.start(self.word)
            self.word = "earliest"
        if session.waits(self.cursor, now, in_grace):
            return out  # the writer's window will reach the cursor: no gap
        verdict = session.rule(self.cursor, self.reading)
        if verdict is not None:
            out.append(session.gap(self.cursor, verdict))
            self.cursor = session.tail_cursor
            self.reading = True  # from the tail on, falling behind again is "lagged"
            self._caught_up(out)
            return out
        self.reading = True
        page = session.page(self.cursor.position, limit, max_bytes)
        if page:
            out.append(
                (
                    "events",
                    [(session.incarnation, e.position, e.revision, e.payload, e.ts) for e in page],
                )
            )
            self.cursor = session.cursor(page[-1].position, page[-1].revision)
        if self.cursor.position >= session.tail:
            self._caught_up(out)
        else:
            self.more = True
        return out


def normalize(outputs: list[Output]) -> list[Any]:
    shown: list[Any] = []
    for o in outputs:
        if isinstance(o, Hello):
            shown.append(("hello", o.cursor, o.head))
        elif isinstance(o, Events):
            shown.append(("events", [decoded(e.data) for e in o.events]))
        elif isinstance(o, Gap):
            shown.append(
                (
                    "gap",
                    o.session_id,
                    o.requested_cursor,
                    o.latest_cursor,
                    o.latest_revision,
                    o.reason.value,
                    o.detail.value,
                    o.earliest_cursor,
                )
            )
        elif isinstance(o, CaughtUp):
            shown.append(("caught_up", o.cursor))
    return shown


def decoded(data: bytes) -> tuple[str, int, int, str, int]:
    record = json.loads(data)
    return (
        record["replay_incarnation_id"],
        record["position"],
        record["revision"],
        record["payload"],
        record["ts"],
    )


@dataclass
class StreamCheck:
    """The connection guarantees, checked on a subscription's own outputs only."""

    sid: str
    expect: tuple[str, int] | None  # the next (incarnation, position), None: anything
    delivered: set[tuple[str, int]] = field(default_factory=set)
    hellos: int = 0
    caught_ups: int = 0
    outputs: int = 0

    def take(self, ref: Reference, outputs: list[Output]) -> None:
        for o in outputs:
            if self.outputs == 0:
                assert isinstance(o, Hello), "hello is always first"
            self.outputs += 1
            if isinstance(o, Hello):
                self.hellos += 1
            elif isinstance(o, CaughtUp):
                self.caught_ups += 1
            elif isinstance(o, Gap):
                c = o.latest_cursor
                self.expect = None if c is None else (c.incarnation, c.position + 1)
            elif isinstance(o, Events):
                assert o.events, "an events frame carries 1..N events"
                for e in o.events:
                    inc, pos, rev, payload, ts = decoded(e.data)
                    key = (inc, pos)
                    assert key not in self.delivered, f"event {key} delivered twice"
                    if self.expect is not None:
                        assert key == self.expect, f"got {key}, expected {self.expect}: a skip"
                    self.delivered.add(key)
                    self.expect = (inc, pos + 1)
                    accepted = ref.ever.get((self.sid, inc, pos))
                    assert accepted is not None, f"{key} was never accepted under {inc}"
                    assert (accepted.revision, accepted.payload, accepted.ts) == (rev, payload, ts)
        assert self.hellos == 1 and self.caught_ups <= 1


# -- the state machine --------------------------------------------------------------

moves = st.lists(
    st.one_of(
        st.just(("next", 0)),
        st.tuples(st.just("dup"), st.integers(0, 3)),
        st.tuples(st.just("jump"), st.integers(2, 4)),
    ),
    min_size=0,
    max_size=5,
)


class LogModel(RuleBasedStateMachine):
    """Writes, reads and the passing of time, each checked against the reference.

    A backend plugs in below (`write`, `read`, `backend_trim`, `backend_delete`,
    `state`, `check_agreement`); `now` is its clock. `AGES_ON_READ`: every read of
    the backend applies retention first (the stores do; a bare `SessionTable` does not).
    """

    AGES_ON_READ = False

    def __init__(self, reference: Reference) -> None:
        super().__init__()
        self.ref = reference
        self.now = 1000
        self.grace_until = 0  # a daemon start's grace, for HTTP pages (see `restart`)
        self.names = 0
        self.payloads = 0
        self.readers: list[tuple[ReadProgress, RefReader, StreamCheck]] = []

    @initialize(
        sid=st.sampled_from(SESSIONS),
        kind=st.sampled_from(["earliest", "cursor"]),
        count=st.integers(0, 4),
    )
    def a_first_reader(self, sid: str, kind: str, count: int) -> None:
        """Start with a reader (and some events) so most runs read while the log changes."""
        self.subscribe(sid, kind, 0, False, 0)
        self.append(sid, "fresh", 1, [("next", 0)] * count, [1] * 6, 99)

    # -- the backend -------------------------------------------------------------

    def write(
        self, sid: str, inc: str | None, events: list[NewEvent], restore_to: int | None
    ) -> AppendResult:
        raise NotImplementedError

    def read(self, sid: str, after: int, limit: int, max_bytes: int) -> Snapshot:
        raise NotImplementedError

    def backend_trim(self, sid: str) -> int | None:
        raise NotImplementedError

    def backend_delete(self, sid: str) -> bool:
        raise NotImplementedError

    def state(self) -> Any:
        """What the backend holds, to compare before and after a refused batch."""
        raise NotImplementedError

    def check_agreement(self) -> None:
        raise NotImplementedError

    def observe(self, sid: str, after: int, limit: int, max_bytes: int) -> Snapshot:
        if self.AGES_ON_READ:
            self.ref.trim(sid, self.now)
        return self.read(sid, after, limit, max_bytes)

    def fresh_name(self) -> str:
        self.names += 1
        return f"w{self.names}"

    def payload(self, big: bool) -> str:
        self.payloads += 1
        return ("X" * MAX_EVENT if big else "e") + str(self.payloads)

    # -- writing ---------------------------------------------------------------

    @rule(
        sid=st.sampled_from(SESSIONS),
        which=st.sampled_from(["current"] * 5 + ["fresh", "superseded", "none", "none", "mixed"]),
        floor=st.integers(1, 4),
        steps=moves,
        revisions=st.lists(st.integers(0, 3), min_size=6, max_size=6),
        big=st.integers(0, 40),
        restore_ahead=st.one_of(st.none(), st.none(), st.integers(0, 4)),
    )
    def append(
        self,
        sid: str,
        which: str,
        floor: int,
        steps: list[tuple[str, int]],
        revisions: list[int],
        big: int,
        restore_ahead: int | None = None,
    ) -> None:
        session = self.ref.sessions.get(sid)
        superseded = self.ref.superseded.get(sid, [])
        inc: str | None
        if which == "none":
            inc = None
        elif which == "superseded" and superseded:
            inc = superseded[floor % len(superseded)]
        elif which == "current" and session is not None:
            inc = session.incarnation
        else:
            inc = self.fresh_name()
        starts_fresh = session is None or (inc is not None and inc != session.incarnation)
        tail = 0 if starts_fresh or session is None else session.tail
        items: list[tuple[int | None, int, str]] = []
        for i, (kind, n) in enumerate(steps):
            if inc is None:
                position: int | None = None
            elif tail == 0:
                position = floor
            elif kind == "dup":
                position = max(1, tail - n)
            elif kind == "jump":
                position = tail + n
            else:
                position = tail + 1
            if position is not None:
                tail = max(tail, position)
            items.append((position, revisions[i], self.payload(big == i)))
        if which == "mixed" and items:
            first_pos, rev, payload = items[0]
            items[0] = (None if first_pos is not None else 1, rev, payload)
        events = [EventIn(rev, msgspec.Raw(json.dumps(p).encode()), pos) for pos, rev, p in items]
        # A writer re-sending its window, which goes on beyond this batch (rule 4).
        restore_to = None
        if restore_ahead is not None and inc is not None and items and tail > 0:
            restore_to = tail + restore_ahead

        before = self.state()
        try:
            result = self.write(sid, inc, list(events), restore_to)
        except AppendRefused as exc:
            code = exc.code
            event(f"append refused: {code}")
            try:
                self.ref.append(sid, inc, items, self.now, "0" * UUID_LEN)
            except Refused as ref_exc:
                assert ref_exc.code == code
            else:
                raise AssertionError(f"refused with {code}, the reference accepts") from None
            assert self.state() == before, "a refused batch changed something"
            return
        daemon_inc = result.tail_cursor.incarnation if result.tail_cursor else ""
        if inc is None and session is None and items:
            assert result.created
            assert daemon_inc not in {s.incarnation for s in self.ref.sessions.values()}
            assert not daemon_inc.startswith("w")  # never one of this test's names
        existed = session is not None
        expected = self.ref.append(sid, inc, items, self.now, daemon_inc, restore_to)
        if expected is None:
            assert (result.accepted, result.duplicates, result.cursors) == (0, 0, [])
            assert not result.created and not result.took_over
            assert result.tail_cursor == (session.tail_cursor if session else None)
            return
        assert (result.accepted, result.duplicates) == (expected.accepted, expected.duplicates)
        assert result.cursors == expected.cursors
        assert result.tail_cursor == expected.tail_cursor
        assert (result.holes, result.skipped) == (expected.holes, expected.skipped)
        assert result.created == (not existed)
        assert result.took_over == (existed and starts_fresh)

    @rule(dt=st.sampled_from([1, 50, 150, 399, 401, 900]))
    def advance_time(self, dt: int) -> None:
        self.now += dt

    @rule(grace=st.sampled_from([0, 300]))
    def grace_for_pages(self, grace: int) -> None:
        """HTTP pages read as if the daemon had started now, with this startup grace."""
        self.grace_until = self.now + grace if grace else 0

    @rule(sid=st.sampled_from(SESSIONS))
    def trim(self, sid: str) -> None:
        assert self.backend_trim(sid) == self.ref.trim(sid, self.now)

    @rule(sid=st.sampled_from(SESSIONS))
    def delete(self, sid: str) -> None:
        assert self.backend_delete(sid) == (sid in self.ref.sessions)
        self.ref.delete(sid)

    # -- reading ---------------------------------------------------------------

    def start_for(self, sid: str, kind: str, seed: int, old: bool) -> Cursor | str:
        if kind != "cursor":
            return kind
        session = self.ref.sessions.get(sid)
        superseded = self.ref.superseded.get(sid, [])
        if old and superseded:
            inc = superseded[seed % len(superseded)]
        elif session is not None:
            inc = session.incarnation
        else:
            inc = "ghost"
        tail = session.tail if session else 3
        return Cursor(inc, seed % 3, seed % (tail + 3), sid)

    @precondition(lambda self: len(self.readers) < 3)
    @rule(
        sid=st.sampled_from(SESSIONS),
        kind=st.sampled_from(["earliest", "latest", "cursor", "cursor"]),
        seed=st.integers(0, 40),
        old=st.booleans(),
        grace=st.sampled_from([0, 0, 300]),
    )
    def subscribe(self, sid: str, kind: str, seed: int, old: bool, grace: int) -> None:
        start = self.start_for(sid, kind, seed, old)
        grace_until = self.now + grace if grace else 0
        sub = ReadProgress(sid, start, grace_until_ms=grace_until)  # type: ignore[arg-type]
        cursor = start if isinstance(start, Cursor) else None
        reader = RefReader(sid, cursor, "earliest" if cursor else str(start), grace_until)
        expect = (cursor.incarnation, cursor.position + 1) if cursor else None
        self.readers.append((sub, reader, StreamCheck(sid, expect)))

    def feed_once(self, i: int, limit: int, max_bytes: int) -> bool:
        """One read of reader `i`, checked against the reference; whether to read again."""
        sub, reader, stream = self.readers[i % len(self.readers)]
        snapshot = self.observe(sub.session_id, sub.after(), limit, max_bytes)
        outputs = sub.feed(snapshot, self.now)
        expected = reader.feed(self.ref, self.now, limit, max_bytes)
        assert normalize(outputs) == expected
        assert sub.more == reader.more
        assert sub.caught_up == reader.caught_up_sent
        stream.take(self.ref, outputs)
        for o in outputs:
            event(f"feed: {type(o).__name__} {o.detail.value if isinstance(o, Gap) else ''}")
        if sub.wait_until_ms:
            event("feed: waiting for a restore or the startup grace")
        return sub.more

    @precondition(lambda self: bool(self.readers))
    @rule(
        i=st.integers(0, 2), limit=st.integers(1, 4), max_bytes=st.sampled_from([1, 400, 1 << 20])
    )
    def feed(self, i: int, limit: int, max_bytes: int) -> None:
        self.feed_once(i, limit, max_bytes)

    @precondition(lambda self: bool(self.readers))
    @rule(i=st.integers(0, 2), limit=st.integers(1, 4))
    def follow(self, i: int, limit: int) -> None:
        """Read until caught up, as the reader socket does before it waits."""
        for _ in range(20):
            if not self.feed_once(i, limit, 1 << 20):
                break

    @precondition(lambda self: bool(self.readers))
    @rule(i=st.integers(0, 2))
    def drop_reader(self, i: int) -> None:
        self.readers.pop(i % len(self.readers))

    @rule(
        sid=st.sampled_from(SESSIONS),
        kind=st.sampled_from(["earliest", "latest", "cursor", "cursor", "cursor"]),
        seed=st.integers(0, 40),
        old=st.booleans(),
        limit=st.integers(1, 4),
    )
    def http_page(self, sid: str, kind: str, seed: int, old: bool, limit: int) -> None:
        start = self.start_for(sid, kind, seed, old)
        if isinstance(start, Cursor):
            after = start.position
        else:
            after = 0 if start == "earliest" else U64_MAX
        snapshot = self.observe(sid, after, limit, 1 << 20)
        try:
            events, gap, next_cursor, caught_up = read_page(
                snapshot,
                start,  # type: ignore[arg-type]
                sid,
                now_ms=self.now,
                grace_until_ms=self.grace_until,
            )
        except MustWait:
            assert self.expected_page(sid, start, limit) == "wait"
            event("page: wait")
            return
        got = (
            normalize([Events(events)]) if events else [],
            normalize([gap]) if gap else [],
            next_cursor,
            caught_up,
        )
        assert got == self.expected_page(sid, start, limit)
        event(f"page: {gap.detail.value if gap else 'served' if events else 'empty'}")

    def expected_page(self, sid: str, start: Cursor | str, limit: int) -> tuple[Any, ...] | str:
        session = self.ref.sessions.get(sid)
        in_grace = self.now < self.grace_until
        if session is None:
            if isinstance(start, Cursor) and start.position > 0:
                if in_grace:
                    return "wait"
                gap = ("gap", sid, str(start), None, None, "unavailable", "unknown_session", None)
                return ([], [gap], "earliest", False)
            return ([], [], start, True)
        cursor = start if isinstance(start, Cursor) else session.start(start)
        if session.waits(cursor, self.now, in_grace):
            return "wait"
        verdict = session.rule(cursor, reading=False)
        if verdict is not None:
            return ([], [session.gap(cursor, verdict)], session.tail_cursor, True)
        page = session.page(cursor.position, limit, 1 << 20)
        if page:
            cursor = session.cursor(page[-1].position, page[-1].revision)
        shown = [
            (
                "events",
                [(session.incarnation, e.position, e.revision, e.payload, e.ts) for e in page],
            )
        ]
        return (shown if page else [], [], cursor, cursor.position >= session.tail)

    # -- agreement ---------------------------------------------------------------

    @invariant()
    def the_backend_agrees_with_the_reference(self) -> None:
        self.check_agreement()


def held(session: RefSession) -> tuple[Any, ...]:
    """What a backend must hold of a session: its head, and per retained event its
    record (decoded) and size."""
    events = [
        ((session.incarnation, p, ev.revision, ev.payload, ev.ts), ev.size)
        for p in session.retained
        for ev in [session.accepted[p]]
    ]
    return (session.incarnation, session.tail, session.latest_revision, events)
