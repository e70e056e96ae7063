"""The reader's resume rules, sans I/O: frames in, items and a resume cursor out.

`ReaderMachine` knows nothing of sockets, tasks or time. The I/O shell
(`reader.client.Reader`) tells it of each connection (`connected`, `closed`) and
hands it each message; it answers with the items to yield and keeps `cursor`,
where the next connection must start. The JavaScript reader's `ReaderState`
(client/js/src/index.js) has the same rules; both pass tests/vectors/reader.json.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from livereplay.protocol.cursor import parse_cursor
from livereplay.protocol.frames import (
    CaughtUpFrame,
    ErrorFrame,
    EventsFrame,
    Frame,
    GapFrame,
    HelloFrame,
    json_frame_decoder,
    msgpack_frame_decoder,
)
from livereplay.protocol.records import EventOut
from livereplay.protocol.rules import CaughtUp, Gap
from livereplay.reader.errors import ReaderProtocolError, ReaderRefused

Item = EventOut | Gap | CaughtUp


@dataclass(slots=True)
class ReaderStats:
    """One reader's counters: the machine counts what frames did, the shell connections."""

    connects: int = 0  # WebSocket connections opened
    failed_connects: int = 0
    reconnects: int = 0  # connections opened after the first
    heartbeat_timeouts: int = 0
    duplicates_dropped: int = 0  # events at or below the last yielded position (a safety net)
    events: int = 0
    gaps: int = 0


def decode_frame(message: str | bytes) -> Frame:
    """A text message as a JSON frame, a binary one as a MessagePack frame."""
    try:
        if isinstance(message, str):
            return json_frame_decoder.decode(message)
        return msgpack_frame_decoder.decode(message)
    except msgspec.DecodeError as exc:
        raise ReaderProtocolError(f"a frame protocol 1 does not have: {exc}") from None


class ReaderMachine:
    """One reader's progress through the daemon's frames, across its connections.

    `cursor` starts as the cursor or word the reader was given and moves to the
    hello's resolved cursor, each yielded event, each gap's `latest_cursor` (or
    `earliest`) and each `caught_up` cursor. `hello` is this connection's, once
    it came.
    """

    def __init__(self, start: str, stats: ReaderStats | None = None) -> None:
        self.cursor = start
        self.stats = stats if stats is not None else ReaderStats()
        self.hello: HelloFrame | None = None
        self._error: ErrorFrame | None = None
        # (incarnation, position) of the last yielded event or gap resume point:
        # events at or below it in the same incarnation are duplicates.
        self._last: tuple[str, int] | None = None

    def connected(self) -> None:
        """A new connection opened at `cursor`; its first frame must be hello."""
        self.hello = None
        self._error = None

    def closed(self, code: int) -> None:
        """The connection closed with `code`: 44xx is final (`ReaderRefused`), else resume."""
        error, self._error, self.hello = self._error, None, None
        if 4400 <= code < 4500:
            raise ReaderRefused(
                f"the daemon refused the reader (close {code})"
                + (f": {error.code}: {error.message}" if error else ""),
                close_code=code,
                code=error.code if error else None,
            )

    def receive_message(self, message: str | bytes) -> list[Item]:
        """Bytes in, items out: `decode_frame`, then `receive`."""
        return self.receive(decode_frame(message))

    def receive(self, frame: Frame) -> list[Item]:
        """Move the resume point for one frame; the items to yield, in order."""
        if self.hello is None:
            return self._first(frame)
        if isinstance(frame, EventsFrame):
            return self._events(frame.events)
        if isinstance(frame, GapFrame):
            return [self._gap(frame.gap(), frame.latest_cursor)]
        if isinstance(frame, CaughtUpFrame):
            return [self._caught_up(frame)]
        if isinstance(frame, ErrorFrame):
            self._error = frame  # the 44xx close follows
            return []
        if isinstance(frame, HelloFrame):
            raise ReaderProtocolError("a second hello on one connection")
        return []  # heartbeat: its arrival fed the shell's watchdog

    def _first(self, frame: Frame) -> list[Item]:
        """A connection opens with hello, or with an error that its 44xx close follows."""
        if self._error is None and isinstance(frame, HelloFrame):
            self.hello = frame
            if frame.cursor is not None:
                self.cursor = frame.cursor  # a word resolved to where reading starts
            return []
        if self._error is None and isinstance(frame, ErrorFrame):
            self._error = frame
            return []
        raise ReaderProtocolError(f"the first frame was not hello: {self._error or frame!r}")

    def _events(self, events: list[EventOut]) -> list[Item]:
        fresh: list[Item] = []
        last = self._last
        for event in events:
            if (
                last is not None
                and event.replay_incarnation_id == last[0]
                and event.position <= last[1]
            ):
                self.stats.duplicates_dropped += 1
                continue
            last = (event.replay_incarnation_id, event.position)
            self.cursor = event.cursor
            fresh.append(event)
        self._last = last
        self.stats.events += len(fresh)
        return fresh

    def _gap(self, gap: Gap, latest_text: str | None) -> Gap:
        # Resume strictly after the gap: the host reloads its state from its own source.
        latest = gap.latest_cursor
        self._last = None if latest is None else (latest.incarnation, latest.position)
        self.cursor = latest_text or "earliest"
        self.stats.gaps += 1
        return gap

    def _caught_up(self, frame: CaughtUpFrame) -> CaughtUp:
        if frame.cursor is None:
            if self.cursor == "latest":
                # The session does not exist yet: everything it gets is new, so a
                # reconnect must not skip what was appended while disconnected.
                self.cursor = "earliest"
            return CaughtUp(None)
        self.cursor = frame.cursor
        return CaughtUp(parse_cursor(frame.cursor))


__all__ = ["Item", "ReaderMachine", "ReaderStats", "decode_frame"]
