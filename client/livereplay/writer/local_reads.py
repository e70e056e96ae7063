"""Reading the writer client's own window: replay after a cursor, and subscriptions.

Both go through the daemon's read rules (`_rules`), applied to the local window,
so a runtime's observers get the same answers and gaps a host gets from the
daemon, without touching the network. A subscription is a position in the
window, not a queue: it reads a page after its position, and when caught up it
waits for the next append to its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Final

import msgspec

from livereplay.protocol.cursor import Cursor, StartWord
from livereplay.protocol.errors import LiveReplayError
from livereplay.protocol.records import EventOut
from livereplay.protocol.rules import Events, Gap, ReadProgress
from livereplay.writer.window import LocalWindow, Watcher

PAGE_EVENTS: Final = 512
_event_decoder: Final = msgspec.json.Decoder(EventOut)


def decode_events(data: list[bytes]) -> list[EventOut]:
    return [_event_decoder.decode(d) for d in data]


class SubscriberLagged(LiveReplayError):
    """The subscription fell behind the window (its next event was trimmed).

    Resubscribe from the last cursor you handled; `gap` says what was lost.
    """

    def __init__(self, gap: Gap) -> None:
        super().__init__(f"subscriber lagged: gap {gap.reason.value} ({gap.detail.value})")
        self.gap = gap


class WindowSubscription:
    """Events after a cursor: the buffered ones, then live ones as they are appended.

    Iterate it from a thread (`for event in sub`, or `get(timeout)`) or from an
    event loop (`async for event in sub`). Once the subscription or its client is
    closed, iteration ends after the events already retained; it raises
    `SubscriberLagged` if it falls out of the window.
    """

    def __init__(self, window: LocalWindow, session_id: str, cursor: Cursor | StartWord) -> None:
        self._window = window
        self._sub = ReadProgress(session_id, cursor)
        self._ready: deque[EventOut] = deque()
        self._closed = False
        self._waiting = False
        self._changed = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._achanged: asyncio.Event | None = None
        self._watcher = Watcher(self._wake)
        window.watch(session_id, self._watcher)

    @property
    def session_id(self) -> str:
        return self._sub.session_id

    @property
    def closed(self) -> bool:
        return self._closed or self._window.closed

    def close(self) -> None:
        self._closed = True
        self._window.unwatch(self.session_id, self._watcher)
        self._wake()

    def first_read(self) -> Gap | None:
        """Apply the read rules at the cursor: the gap that prevents reading, or None."""
        return self._poll()

    def _poll(self) -> Gap | None:
        """Read what follows the position into `_ready`; a gap stops the reading."""
        sub = self._sub
        while True:
            snapshot = self._window.snapshot(self.session_id, sub.after(), PAGE_EVENTS)
            for output in sub.feed(snapshot, self._window.clock()):
                if isinstance(output, Gap):
                    return output
                if isinstance(output, Events):
                    self._ready.extend(decode_events([e.data for e in output.events]))
            if not sub.more:
                return None

    def _next_ready(self) -> EventOut | None:
        if not self._ready:
            gap = self._poll()
            if gap is not None:
                self.close()
                raise SubscriberLagged(gap)
        return self._ready.popleft() if self._ready else None

    def _wake(self) -> None:
        if not self._waiting:
            return
        self._waiting = False
        self._changed.set()
        loop, achanged = self._loop, self._achanged
        if loop is None or achanged is None:
            return
        if threading.get_ident() == self._loop_thread:
            achanged.set()
        else:
            # A closed loop raises: nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(achanged.set)

    # -- from threads ----------------------------------------------------------

    def get(self, timeout: float | None = None) -> EventOut | None:
        """The next event, waiting up to `timeout` seconds; None on timeout or when closed."""
        while True:
            self._changed.clear()
            self._waiting = True
            event = self._next_ready()
            if event is not None or self.closed:
                self._waiting = False
                return event
            if not self._changed.wait(timeout):
                self._waiting = False
                return None

    def __iter__(self) -> Iterator[EventOut]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    # -- from an event loop ----------------------------------------------------

    async def aget(self, timeout: float | None = None) -> EventOut | None:  # noqa: ASYNC109
        """The next event, awaiting up to `timeout` seconds; None on timeout or when closed."""
        if self._achanged is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._achanged = asyncio.Event()
        achanged = self._achanged
        while True:
            achanged.clear()
            self._waiting = True
            event = self._next_ready()
            if event is not None or self.closed:
                self._waiting = False
                return event
            try:
                async with asyncio.timeout(timeout):
                    await achanged.wait()
            except TimeoutError:
                self._waiting = False
                return None

    async def __aiter__(self) -> AsyncIterator[EventOut]:
        while True:
            event = await self.aget()
            if event is None:
                return
            yield event


__all__ = ["SubscriberLagged", "WindowSubscription", "decode_events"]
