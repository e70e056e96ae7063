"""Who gets which live frame: the fan-out decisions, as plain code without I/O.

Readers at the live edge of a session wait in its `LiveGroup`, bucketed by the
position they have been sent up to. When the session changes, `plan` says, for each
bucket, which events follow (one frame's worth, the same for every reader there) or
that its readers must leave the group: the events after them are not all at hand
(trimmed, a hole, another incarnation, outside a Redis daemon's local window), so
each goes back to its own path, where the read rules give it the right gap. Readers
normally share one bucket, the tail, so one frame per codec serves them all.

The caller writes the frames and tells the group of readers it could not write to
(a full buffer: a slow reader), which leave at the position they were at. A reader
joins with the position it has been sent up to, at any time; the cut from its own
path to the group's is exact because the group sends it exactly what follows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from livereplay.protocol import Cursor, StoredEvent


class LiveSource(Protocol):
    """The events a group is fed from: the session's log, or a daemon's local window."""

    @property
    def incarnation(self) -> str: ...

    @property
    def tail(self) -> int: ...

    @property
    def head(self) -> Cursor:
        """The tail's cursor, for heartbeats."""
        ...

    def page_after(self, position: int, limit: int, max_bytes: int) -> list[StoredEvent] | None:
        """The events at `position + 1`, `+ 2`, ... (at most `limit`, and `max_bytes` of
        them unless the first alone is larger); empty at the tail; None when they are not
        all here to send, so a reader there must be served on its own."""
        ...


@dataclass(eq=False, slots=True)
class Member:
    """One reader in a group: the last event it was sent, and how its frames are encoded."""

    position: int
    revision: int
    codec: str
    key: object = None  # the I/O side's handle on the reader


@dataclass(slots=True)
class Delivery:
    """One frame for the readers of one bucket: the events after `after`, in order."""

    after: int
    events: list[StoredEvent]
    members: list[Member]

    @property
    def last(self) -> StoredEvent:
        return self.events[-1]


@dataclass(slots=True)
class Plan:
    deliveries: list[Delivery] = field(default_factory=list)
    released: list[Member] = field(default_factory=list)  # back to their own path
    more: bool = False  # some readers are still behind the tail: plan again at once


class LiveGroup:
    """The readers of one session's incarnation that are at (or near) its live edge."""

    def __init__(self, incarnation: str) -> None:
        self.incarnation = incarnation
        self._at: dict[int, dict[Member, None]] = {}  # position -> its readers, in order
        self._where: dict[Member, int] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __iter__(self) -> Iterator[Member]:
        return iter(list(self._where))

    def join(self, member: Member) -> None:
        self._where[member] = member.position
        self._at.setdefault(member.position, {})[member] = None

    def leave(self, member: Member) -> bool:
        position = self._where.pop(member, None)
        if position is None:
            return False
        bucket = self._at[position]
        del bucket[member]
        if not bucket:
            del self._at[position]
        return True

    def plan(self, source: LiveSource | None, limit: int, max_bytes: int) -> Plan:
        """The frames to send now. Readers of a bucket are moved past the events they
        are sent; those sent nothing because it cannot be served are released."""
        plan = Plan()
        if source is None or source.incarnation != self.incarnation:
            plan.released = list(self._where)  # the session went, or was taken over
            self._at.clear()
            self._where.clear()
            return plan
        tail = source.tail
        moved: list[tuple[int, dict[Member, None]]] = []
        for position in sorted(self._at):
            if position >= tail:
                continue
            page = source.page_after(position, limit, max_bytes)
            bucket = self._at.pop(position)
            members = list(bucket)
            if not page:
                plan.released += members
                for member in members:
                    del self._where[member]
                continue
            last = page[-1].position
            plan.deliveries.append(Delivery(position, page, members))
            moved.append((last, bucket))
            plan.more = plan.more or last < tail
        # Only now: a bucket moved onto another is not planned twice in one plan.
        for last, bucket in moved:
            self._at.setdefault(last, {}).update(bucket)
            for member in bucket:
                self._where[member] = last
        return plan

    def delivered(self, delivery: Delivery, member: Member) -> None:
        """`member` was written its frame: its cursor moves past the delivery's events."""
        last = delivery.last
        member.position = last.position
        member.revision = last.revision

    def undelivered(self, member: Member) -> None:
        """`member` could not be written its frame (slow, closing): it leaves the group at
        the position it was at, which the caller takes it back to."""
        self.leave(member)
