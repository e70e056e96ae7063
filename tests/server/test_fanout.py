"""The live fan-out's decisions (fanout.py), without sockets.

Readers go back and forth between their own path (a `ReadProgress` reading pages)
and a session's `LiveGroup` (shared frames), while the session is appended to, with
holes, trimmed, taken over and deleted, and while writes to some readers fail (a
full buffer). Whatever happens, each reader's stream holds the connection promises:
no event twice, none out of order, no position skipped without a gap in its place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import msgspec
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from livereplay import Cursor, Limits
from livereplay.protocol import ReadProgress, SessionTable, Snapshot
from livereplay.protocol.records import EventIn
from livereplay.protocol.rules import Events, Gap
from livereplay_server.fanout import LiveGroup, Member
from livereplay_server.memory import LogSource

S = "s"
PAGE = 3


def events_of(data: list[bytes]) -> list[tuple[str, int]]:
    return [(r["replay_incarnation_id"], r["position"]) for r in map(json.loads, data)]


@dataclass
class Stream:
    """What one reader received, checked as it arrives."""

    expect: tuple[str, int] | None = None  # the next (incarnation, position); None: any
    seen: set[tuple[str, int]] = field(default_factory=set)

    def events(self, received: list[tuple[str, int]]) -> None:
        for inc, pos in received:
            assert (inc, pos) not in self.seen, f"{(inc, pos)} twice"
            if self.expect is not None:
                assert (inc, pos) == self.expect, f"got {(inc, pos)}, expected {self.expect}"
            self.seen.add((inc, pos))
            self.expect = (inc, pos + 1)

    def gap(self, gap: Gap) -> None:
        c = gap.latest_cursor
        self.expect = None if c is None else (c.incarnation, c.position + 1)


@dataclass(eq=False)
class Reader:
    sub: ReadProgress
    stream: Stream = field(default_factory=Stream)
    member: Member | None = None  # in the group
    joins: int = 0


class FanOut(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = SessionTable(Limits(max_events_per_session=6))
        self.group: LiveGroup | None = None
        self.readers: list[Reader] = []
        self.incarnation = "a0"
        self.written = 0  # the writer's last position under its incarnation
        self.names = 0
        self.now = 0

    # -- the session -------------------------------------------------------------

    @rule(count=st.integers(1, 4), jump=st.sampled_from([0, 0, 0, 2]))
    def append(self, count: int, jump: int) -> None:
        # A writer's positions go on whatever the daemon did (a delete included).
        tail = self.written
        first = tail + 1 + (jump if tail else 0)
        self.written = first + count - 1
        batch = [EventIn(1, msgspec.Raw(b"1"), p) for p in range(first, first + count)]
        self.now += 1
        self.table.append(S, self.incarnation, batch, self.now)

    @rule()
    def take_over(self) -> None:
        self.names += 1
        self.incarnation = f"a{self.names}"
        self.written = 0

    @rule()
    def delete(self) -> None:
        self.table.delete(S)

    # -- readers -----------------------------------------------------------------

    @precondition(lambda self: len(self.readers) < 4)
    @rule(start=st.sampled_from(["earliest", "latest"]))
    def connect(self, start: str) -> None:
        self.readers.append(Reader(ReadProgress(S, start)))  # type: ignore[arg-type]

    @precondition(lambda self: bool(self.readers))
    @rule(i=st.integers(0, 3))
    def own_read(self, i: int) -> None:
        """A reader on its own path reads once; caught up, it joins the group."""
        reader = self.readers[i % len(self.readers)]
        if reader.member is not None:
            return
        sub = reader.sub
        snapshot = Snapshot.of(self.table.get(S), sub.after(), PAGE, 1 << 20)
        for output in sub.feed(snapshot, self.now):
            if isinstance(output, Events):
                reader.stream.events(events_of([e.data for e in output.events]))
            elif isinstance(output, Gap):
                reader.stream.gap(output)
        if sub.more or not sub.caught_up or sub.cursor is None:
            return
        log = self.table.get(S)
        if log is None or log.incarnation != sub.cursor.incarnation:
            return  # the group would refuse it: its own path tells it what happened
        if self.group is None or self.group.incarnation != log.incarnation:
            self.release_all()
            self.group = LiveGroup(log.incarnation)
        reader.member = Member(sub.cursor.position, sub.cursor.revision, "json", reader)
        reader.joins += 1
        self.group.join(reader.member)

    @precondition(lambda self: self.group is not None)
    @rule(fails=st.sets(st.integers(0, 3), max_size=2))
    def flush(self, fails: set[int]) -> None:
        """The group's frames are written; writes to the readers in `fails` fail."""
        assert self.group is not None
        log = self.table.get(S)
        plan = self.group.plan(None if log is None else LogSource(log), PAGE, 1 << 20)
        for member in plan.released:
            event("released by the plan")
            self.release(member, self.group.incarnation)
        for delivery in plan.deliveries:
            for member in delivery.members:
                reader = member.key
                assert isinstance(reader, Reader)
                if self.readers.index(reader) in fails:
                    event("a write failed")
                    self.group.undelivered(member)
                    self.release(member, self.group.incarnation)
                    continue
                reader.stream.events(events_of([e.data for e in delivery.events]))
                self.group.delivered(delivery, member)
                event("delivered")

    @rule(count=st.integers(1, 3), fails=st.sets(st.integers(0, 3), max_size=1))
    def append_then_flush(self, count: int, fails: set[int]) -> None:
        """The common case: a change while readers wait in the group."""
        self.append(count, 0)
        if self.group is not None:
            self.flush(fails)

    @precondition(lambda self: bool(self.readers))
    @rule()
    def everyone_reads(self) -> None:
        for i in range(len(self.readers)):
            self.own_read(i)

    @precondition(lambda self: bool(self.readers))
    @rule(i=st.integers(0, 3))
    def disconnect(self, i: int) -> None:
        reader = self.readers.pop(i % len(self.readers))
        if reader.member is not None and self.group is not None:
            self.group.leave(reader.member)

    def release(self, member: Member, incarnation: str) -> None:
        reader = member.key
        assert isinstance(reader, Reader)
        reader.member = None
        reader.sub.resume_after(Cursor(incarnation, member.revision, member.position, S))

    def release_all(self) -> None:
        if self.group is not None:
            for member in self.group:
                self.group.leave(member)
                self.release(member, self.group.incarnation)

    @invariant()
    def readers_in_the_group_are_the_ones_that_joined(self) -> None:
        members = {m for m in self.group} if self.group is not None else set()
        assert members == {r.member for r in self.readers if r.member is not None}


FanOut.TestCase.settings = settings(max_examples=1000, stateful_step_count=50, deadline=None)
test_readers_moving_between_their_own_path_and_the_group = FanOut.TestCase
