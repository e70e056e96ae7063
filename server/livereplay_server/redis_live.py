"""Live readers on the Redis backend never read Redis: each daemon keeps a local window.

The append script publishes the new events themselves on the session's channel
(lua/append.lua), and the daemon's one subscriber connection feeds them into a
small window per watched session: the live fan-out reads from it, exactly as it
reads a session's log on the memory backend. It is plain code, fed messages.

A window is one contiguous run of positions of one incarnation. Anything that
breaks the run (a message lost, a hole the writer left, an event too old) only
moves where the run starts: a reader whose next event is not in the run goes back
to its own path, which reads Redis and tells it any gap. So the window never has
to know what Redis knows, and pub/sub being at-most-once can cost a read, never a
wrong answer.

Message format, one per accepted batch: `a <incarnation>\\n` (`n` for a new log: a
new session or a takeover), then per new event `<position> <revision> <ts> <len>\\n`
followed by `len` bytes of the event's JSON. A trim publishes `t`, a delete nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from livereplay.protocol import Cursor, StoredEvent
from livereplay.protocol.constants import MiB
from livereplay.protocol.rules import contiguous

# A window keeps about what a few live frames need: readers further behind read Redis.
WINDOW_EVENTS: Final = 1024
WINDOW_BYTES: Final = 4 * MiB
# All of a daemon's windows together: past this, the least recently told are let go.
WINDOWS_BYTES: Final = 64 * MiB


class Malformed(ValueError):
    """A message that is not one this daemon's scripts publish."""


@dataclass(slots=True)
class Told:
    """One parsed message: a batch's new events, or another change."""

    kind: str  # "a" appended, "n" a new log, "t" trimmed, "" deleted (or unknown)
    incarnation: str = ""
    events: list[StoredEvent] = field(default_factory=list)


def parse(message: bytes) -> Told:
    if message in (b"", b"t"):
        return Told(message.decode())
    head, newline, body = message.partition(b"\n")
    kind, _, incarnation = head.partition(b" ")
    if kind not in (b"a", b"n") or not newline or not incarnation:
        raise Malformed("not an append message")
    events: list[StoredEvent] = []
    at = 0
    view = memoryview(body)
    while at < len(body):
        end = body.index(b"\n", at)
        pos, rev, ts, size = body[at:end].split(b" ")
        start = end + 1
        stop = start + int(size)
        if stop > len(body):
            raise Malformed("an event runs past the message")
        events.append(StoredEvent(int(pos), int(rev), int(ts), bytes(view[start:stop])))
        at = stop
    return Told(kind.decode(), incarnation.decode(), events)


@dataclass(slots=True)
class Window:
    """The newest events of one session's incarnation, one contiguous run, for a
    daemon's live readers (fanout.LiveSource)."""

    session_id: str
    incarnation: str
    tail: int = 0  # the last position told
    latest_revision: int = 0
    events: deque[StoredEvent] = field(default_factory=deque)
    size: int = 0

    @property
    def head(self) -> Cursor:
        return Cursor(self.incarnation, self.latest_revision, self.tail, self.session_id)

    def add(self, event: StoredEvent) -> None:
        if self.tail and event.position != self.tail + 1:
            self.drop_all()  # not contiguous (a hole, a lost message): start the run again
        self.events.append(event)
        self.size += event.size
        self.tail, self.latest_revision = event.position, event.revision
        while len(self.events) > WINDOW_EVENTS or (self.size > WINDOW_BYTES and self.events):
            self.size -= self.events.popleft().size

    def age(self, horizon_ms: int) -> None:
        """An event past the age limit is never served live either."""
        while self.events and self.events[0].ts_ms <= horizon_ms:
            self.size -= self.events.popleft().size

    def drop_all(self) -> None:
        self.events.clear()
        self.size = 0

    def page_after(self, position: int, limit: int, max_bytes: int) -> list[StoredEvent] | None:
        events = self.events
        if not events or not events[0].position <= position + 1 <= self.tail:
            return None
        first = position + 1 - events[0].position
        page: list[StoredEvent] = []
        size = 0
        for i in range(first, min(first + limit, len(events))):
            size += events[i].size
            if page and size > max_bytes:
                break
            page.append(events[i])
        return contiguous(page, position) or None


class Windows:
    """The windows of the sessions this daemon's readers watch, at most WINDOWS_BYTES
    together: a session whose window was let go is read from Redis until its next
    message starts a new one."""

    def __init__(self, max_age_ms: int, max_bytes: int = WINDOWS_BYTES) -> None:
        self.max_age_ms = max_age_ms
        self.max_bytes = max_bytes
        self.size = 0  # bytes of events held, all windows
        self._windows: dict[str, Window] = {}  # least recently told first

    def __len__(self) -> int:
        return len(self._windows)

    def told(self, session_id: str, message: bytes) -> None:
        """What the session's channel said. A message this daemon cannot read, or one
        that says nothing of the events, leaves no window: readers read Redis."""
        try:
            told = parse(message)
        except (Malformed, ValueError):
            self.forget(session_id)
            return
        if told.kind == "t":
            return  # events trimmed in Redis may stay here: they were real, and recent
        window = self._windows.pop(session_id, None)
        if told.kind != "a" or window is None or window.incarnation != told.incarnation:
            if window is not None:
                self.size -= window.size
            if told.kind not in ("a", "n"):
                return  # deleted
            window = Window(session_id, told.incarnation)
        self._windows[session_id] = window  # now the most recently told
        self.size -= window.size
        for event in told.events:
            window.add(event)
        self.size += window.size
        while self.size > self.max_bytes and len(self._windows) > 1:
            self.forget(next(iter(self._windows)))

    def get(self, session_id: str, now_ms: int) -> Window | None:
        window = self._windows.get(session_id)
        if window is not None:
            self.size -= window.size
            window.age(now_ms - self.max_age_ms)
            self.size += window.size
        return window

    def forget(self, session_id: str) -> None:
        window = self._windows.pop(session_id, None)
        if window is not None:
            self.size -= window.size

    def clear(self) -> None:
        self._windows.clear()
        self.size = 0
