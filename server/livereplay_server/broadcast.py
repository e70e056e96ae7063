"""Live fan-out: the I/O around `fanout.LiveGroup`.

A reader that has caught up joins its session's group and waits; the reader's own
task does nothing while the group serves it. When the session changes, the group
is flushed: each bucket's frame is built once per codec, as complete WebSocket
frames, and the same bytes are written to every reader's transport without waiting
(websockets' `broadcast()` does the same). A reader whose transport has more than
`--live-buffer-bytes` queued is not written to: it leaves the group, and its own
task serves it again from where it was, at its own pace (the read rules give it a
`lagged` gap if the window moved past it; a send that stays stuck cuts it off).

Flushes adapt to load: a change after a quiet spell is flushed at once, but the
next flush waits as long as the last one took, and no longer than what is left of
`--live-coalesce-ms` after it: a busy session goes in fewer, larger frames, a small
group's fan-out takes about half the loop, and a large group's frames still leave
within the latency budget. A flush is written in slices of a quarter millisecond, so
appends and other requests are served between them: appends never wait for a whole
fan-out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from livereplay.protocol import Cursor, StoredEvent
from livereplay.protocol.frames import HeartbeatFrame, text

from .codec import Codec
from .fanout import Delivery, LiveGroup, LiveSource, Member
from .logs import get_logger
from .metrics import Metrics
from .sockets import Socket

log = get_logger("livereplay.broadcast")

# A flush writes for about this long before other work (an append) may run; the
# clock is read every CHECK_EVERY writes.
SLICE_S = 0.00025
CHECK_EVERY = 8


@dataclass(eq=False, slots=True)
class LiveReader:
    """A reader waiting in a group, as its own task sees it: `released` resolves to the
    cursor it continues from when the group lets it go."""

    session_id: str
    socket: Socket
    codec: Codec
    released: asyncio.Future[Cursor]
    member: Member = field(init=False)


@dataclass(slots=True)
class _Flush:
    """A flush being written: (frames by codec, delivery, reader) each, how far it got."""

    work: list[tuple[dict[str, bytes], Delivery, Member]]
    done: int = 0
    spent: float = 0.0  # seconds of writing so far


@dataclass(slots=True)
class _Session:
    group: LiveGroup
    flushing: bool = False
    dirty: bool = False
    timer: asyncio.TimerHandle | None = None
    not_before: float = 0.0  # the next flush's earliest time (loop clock)
    last_frame: float = 0.0  # when its readers were last written anything
    heartbeat: asyncio.TimerHandle | None = None


class Broadcaster:
    def __init__(
        self,
        source: Callable[[str], LiveSource | None],
        metrics: Metrics,
        *,
        max_frame_events: int,
        max_frame_bytes: int,
        coalesce_s: float,
        buffer_bytes: int,
        heartbeat_s: float,
    ) -> None:
        self._source = source
        self._metrics = metrics
        self._limit = max_frame_events
        self._max_bytes = max_frame_bytes
        self._coalesce_s = coalesce_s
        self._buffer_bytes = buffer_bytes
        self._heartbeat_s = heartbeat_s
        self._sessions: dict[str, _Session] = {}

    @property
    def readers(self) -> int:
        return sum(len(s.group) for s in self._sessions.values())

    # -- readers ------------------------------------------------------------------

    def join(self, reader: LiveReader, cursor: Cursor) -> bool:
        """`reader` has been sent everything up to `cursor`: the group serves it now.
        False when the session cannot be served live here (its own path serves it)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(reader.session_id)
        source = self._source(reader.session_id)
        if source is None or source.incarnation != cursor.incarnation:
            return False
        if session is None or session.group.incarnation != source.incarnation:
            if session is not None:
                self._release_all(session)
            session = _Session(LiveGroup(source.incarnation), last_frame=loop.time())
            self._sessions[reader.session_id] = session
            self._arm_heartbeat(reader.session_id, session)
        reader.member = Member(cursor.position, cursor.revision, reader.codec.name, reader)
        session.group.join(reader.member)
        if cursor.position < source.tail:
            self.changed(reader.session_id)
        return True

    def leave(self, reader: LiveReader) -> None:
        """The reader's task is done with it (disconnected): drop it from its group."""
        session = self._sessions.get(reader.session_id)
        if session is not None and session.group.leave(reader.member):
            self._forget_if_empty(reader.session_id, session)

    # -- changes ------------------------------------------------------------------

    def changed(self, session_id: str) -> None:
        """The session changed: flush its group now, or when coalescing allows."""
        session = self._sessions.get(session_id)
        if session is None:
            return
        if session.flushing:
            session.dirty = True
            return
        if session.timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = session.not_before - loop.time()
        if delay > 0:
            session.timer = loop.call_later(delay, self._flush, session_id)
        else:
            session.timer = loop.call_soon(self._flush, session_id)  # type: ignore[assignment]

    def _flush(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        session.timer = None
        session.dirty = False
        group = session.group
        plan = group.plan(self._source(session_id), self._limit, self._max_bytes)
        for member in plan.released:
            self._release(member, group.incarnation)
        if not plan.deliveries:
            self._forget_if_empty(session_id, session)
            return
        session.flushing = True
        session.dirty = plan.more
        work: list[tuple[dict[str, bytes], Delivery, Member]] = []
        for delivery in plan.deliveries:
            wires = self._wire(delivery)
            work.extend((wires, delivery, member) for member in delivery.members)
        self._write_slice(session_id, session, _Flush(work))

    def _write_slice(self, session_id: str, session: _Session, flush: _Flush) -> None:
        """Write readers their frame for about SLICE_S; the rest after other work has run."""
        began = time.perf_counter()
        stop = began + SLICE_S
        group = session.group
        budget = self._buffer_bytes
        work, at, end = flush.work, flush.done, len(flush.work)
        written = size = events = 0
        while at < end:
            wires, delivery, member = work[at]
            at += 1
            reader = member.key
            assert isinstance(reader, LiveReader)
            wire = wires[member.codec]
            socket = reader.socket
            if socket.buffered() > budget or not socket.write_frame(wire):
                # Slow, or closing: its own task serves it from where it was.
                group.undelivered(member)
                self._release(member, group.incarnation, slow=not socket.closed)
                continue
            group.delivered(delivery, member)
            written += 1
            size += len(wire)
            events += len(delivery.events)
            if not written % CHECK_EVERY and time.perf_counter() > stop:
                break
        if written:
            metrics = self._metrics
            metrics.frames_by_type["events"].inc(written)
            metrics.bytes_sent.inc(size)
            metrics.events_sent.inc(events)
        flush.done = at
        flush.spent += time.perf_counter() - began
        loop = asyncio.get_running_loop()
        if at < end:
            loop.call_soon(self._write_slice, session_id, session, flush)
            return
        session.flushing = False
        now = loop.time()
        session.last_frame = now
        # The next flush waits as long as this one took (a small group: fan-out takes
        # about half the loop), but a long flush to a large group leaves only what is
        # left of the coalescing budget: its readers' frames are late enough already.
        spent = flush.spent
        session.not_before = now + min(spent, max(0.0, self._coalesce_s - spent))
        self._forget_if_empty(session_id, session)
        if session.dirty and self._sessions.get(session_id) is session:
            self.changed(session_id)

    def _wire(self, delivery: Delivery) -> dict[str, bytes]:
        """The delivery's frame, built once per codec its readers use (WebSocket frames,
        or HTTP chunks of SSE or NDJSON: the codec knows)."""
        events: list[StoredEvent] = delivery.events
        wires: dict[str, bytes] = {}
        for member in delivery.members:
            if member.codec not in wires:
                reader = member.key
                assert isinstance(reader, LiveReader)
                wires[member.codec] = reader.codec.events_wire(events)
        return wires

    # -- heartbeats ---------------------------------------------------------------

    def _arm_heartbeat(self, session_id: str, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        due = session.last_frame + self._heartbeat_s
        session.heartbeat = loop.call_at(due, self._beat, session_id)

    def _beat(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        loop = asyncio.get_running_loop()
        if not session.flushing and loop.time() >= session.last_frame + self._heartbeat_s:
            source = self._source(session_id)
            head = source.head if source is not None else None
            wires: dict[str, bytes] = {}
            written = 0
            for member in session.group:
                reader = member.key
                assert isinstance(reader, LiveReader)
                wire = wires.get(member.codec)
                if wire is None:
                    wire = wires[member.codec] = reader.codec.wire(HeartbeatFrame(text(head)))
                socket = reader.socket
                if socket.buffered() > self._buffer_bytes or not socket.write_frame(wire):
                    session.group.undelivered(member)
                    self._release(member, session.group.incarnation, slow=not socket.closed)
                    continue
                written += 1
            if written:
                self._metrics.frames_by_type["heartbeat"].inc(written)
            session.last_frame = loop.time()
        if session_id in self._sessions:
            self._arm_heartbeat(session_id, session)

    # -- letting go ---------------------------------------------------------------

    def _release(self, member: Member, incarnation: str, *, slow: bool = False) -> None:
        """Back to its own task, which goes on after the last event it was sent."""
        reader = member.key
        assert isinstance(reader, LiveReader)
        if slow:
            self._metrics.live_slow.inc()
        if not reader.released.done():
            cursor = Cursor(incarnation, member.revision, member.position, reader.session_id)
            reader.released.set_result(cursor)

    def _release_all(self, session: _Session) -> None:
        for member in session.group:
            session.group.leave(member)
            self._release(member, session.group.incarnation)

    def _forget_if_empty(self, session_id: str, session: _Session) -> None:
        if len(session.group) or session.flushing:
            return
        for handle in (session.timer, session.heartbeat):
            if handle is not None:
                handle.cancel()
        if self._sessions.get(session_id) is session:
            del self._sessions[session_id]
