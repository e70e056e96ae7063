"""A long-poll page's wait (`GET .../events?after=C&wait_ms=W`, PROTOCOL.md 6).

A page that would be empty and caught up waits up to `W` ms for the session's next
change, on the change feed the live stream waits on, then is read again. As for a
stream, the change is taken before each read, so an append between the read and
the wait is not missed; the wait ends early when the client goes or the daemon
stops (the response's socket handle, sockets.py), and the page is answered then.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Scope

from livereplay.protocol import Cursor, StartWord

from . import service, sockets
from .reading import first_of
from .state import AppState
from .store import ChangeFeed


async def read_page(
    scope: Scope,
    state: AppState,
    session_id: str,
    start: Cursor | StartWord,
    limit: int,
    wait_ms: int,
) -> service.Page:
    """The page `service.read_page` answers, or with `wait_ms`, the first one after a
    change when it would be empty and caught up (or the last read when the wait ends)."""
    if not wait_ms:
        return await service.read_page(state, session_id, start, limit)
    waiting = ChangeWait(scope, state.store.changes, session_id, wait_ms)
    try:
        while True:
            change = waiting.next_change()
            page = await service.read_page(state, session_id, start, limit)
            if page.events or page.gap is not None or not page.caught_up:
                return page
            if not await waiting.wait(change):
                return page
            # Read on from where this page ended: `latest` must not move with the tail.
            start = page.next_cursor if isinstance(page.next_cursor, Cursor) else "earliest"
    finally:
        waiting.close()


class ChangeWait:
    """The waiting of one long-poll, `wait_ms` in all; counted as a reader meanwhile."""

    def __init__(self, scope: Scope, changes: ChangeFeed, session_id: str, wait_ms: int) -> None:
        self._changes = changes
        self._session_id = session_id
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + wait_ms / 1000
        socket = sockets.http_socket_of(scope)
        self._lost: asyncio.Future[None] | None = socket.lost if socket is not None else None
        changes.watch(session_id)

    def next_change(self) -> asyncio.Future[None]:
        """The session's next change: take it before reading."""
        return self._changes.next_change(self._session_id)

    async def wait(self, change: asyncio.Future[None]) -> bool:
        """Until `change` (True: read again), or the time is up, the client gone or the
        daemon stopping (False: answer what was read)."""
        remaining = self._deadline - self._loop.time()
        if remaining <= 0:
            return False
        futures: tuple[asyncio.Future[Any], ...] = (change,)
        if self._lost is not None:
            futures = (change, self._lost)
        await first_of(self._loop, futures, remaining)
        return change.done() and not (self._lost is not None and self._lost.done())

    def close(self) -> None:
        self._changes.unwatch(self._session_id)
