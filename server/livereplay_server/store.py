"""The storage interface every backend implements, and the change feed readers wait on.

Backends hold the session logs; readers never keep private queues. A reader
asks for a `Snapshot` after its position, and when it is caught up it waits on
`ChangeFeed.next_change(session_id)`, taken *before* the snapshot so no append
can slip between the read and the wait.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from livereplay.protocol import AppendResult, Cursor, Snapshot
from livereplay.protocol.records import NewEvent

from .fanout import LiveSource
from .metrics import StoreStats


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    incarnation: str
    tail_cursor: Cursor
    earliest_cursor: Cursor | None
    retained_events: int
    retained_bytes: int


class StoreUnavailable(Exception):
    """The backend cannot be reached; the caller should refuse and let clients retry."""


class Store(Protocol):
    """A storage backend. Every method is safe to call concurrently from one event loop."""

    changes: ChangeFeed
    # Fresh per daemon start (memory) or per data set (Redis): a writer that sees it
    # change knows the daemon lost its memory and re-sends its window.
    instance_id: str
    # False while the backend has not said which data set it holds (writers must wait).
    instance_known: bool
    # When the data set began (ms): writers re-send their windows from then on.
    data_since_ms: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(
        self,
        session_id: str,
        incarnation: str | None,
        events: Sequence[NewEvent],
        *,
        restore_to: int | None = None,
        instance: str | None = None,
    ) -> AppendResult:
        """Apply one batch atomically, or raise `AppendRefused` having written nothing.

        `restore_to`: the batch is part of a writer re-sending its window up to that
        position (rule 4: readers ahead of the tail wait for it). `instance`: the data
        set the writer was welcomed to; if it is not this one any more the batch is
        refused with `StoreUnavailable`, so the writer reconnects and re-sends.
        """
        ...

    async def snapshot(
        self, session_id: str, after: int, limit: int, max_bytes: int
    ) -> Snapshot: ...

    def live(self, session_id: str) -> LiveSource | None:
        """What the live fan-out reads from, without waiting: None for a session this
        daemon cannot serve live (unknown, or not held here yet)."""
        ...

    async def info(self, session_id: str) -> SessionInfo | None: ...

    async def trim(self, session_id: str) -> int | None:
        """Apply retention now; the number of events dropped, or None if unknown."""
        ...

    async def delete(self, session_id: str) -> bool: ...

    async def list_sessions(
        self, after: str | None, limit: int, *, prefix: str | None = None
    ) -> list[SessionInfo]:
        """Up to `limit` sessions in id order after `after`; only ids starting with
        `prefix` when given (so a prefix token pages within its range)."""
        ...

    async def ready(self) -> bool: ...

    def stats(self) -> StoreStats:
        """Figures for /metrics, read at scrape time."""
        ...

    def sweep(self) -> None:
        """Periodic housekeeping (age and idle expiry), called about once a second."""
        ...


class ChangeFeed:
    """One shared future per watched session, resolved on the session's next change.

    Readers register with `watch`/`unwatch`, which also counts them per session
    (the `readers` figure of the session list) and lets an unwatched future go.
    """

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[None]] = {}
        self.readers: Counter[str] = Counter()
        # Told of every change too: the live fan-out (broadcast.py).
        self.listener: Callable[[str], None] | None = None

    def watch(self, session_id: str) -> None:
        self.readers[session_id] += 1

    def unwatch(self, session_id: str) -> None:
        self.readers[session_id] -= 1
        if self.readers[session_id] <= 0:
            del self.readers[session_id]
            future = self._futures.pop(session_id, None)
            if future is not None and not future.done():
                future.cancel()

    def next_change(self, session_id: str) -> asyncio.Future[None]:
        future = self._futures.get(session_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._futures[session_id] = future
        return future

    def notify(self, session_id: str) -> None:
        future = self._futures.pop(session_id, None)
        if future is not None and not future.done():
            future.set_result(None)
        if self.listener is not None:
            self.listener(session_id)

    def notify_all(self) -> None:
        for session_id in set(self._futures) | set(self.readers):
            self.notify(session_id)
