"""Small helpers so conformance tests read like the protocol: append, read, follow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from livereplay import Cursor, StartWord
from livereplay.protocol import AppendResult, ReadProgress, StoredEvent
from livereplay.protocol.clock import Clock, now_ms
from livereplay.protocol.records import EventIn
from livereplay.protocol.rules import Gap, Output, read_page
from livereplay_server.store import Store

INC = "writer-1"
PAGE = 512
FRAME_BYTES = 1 << 20
# How often `eventually` tries again, and how far a fake clock moves meanwhile.
POLL_S = 0.05


class FakeClock:
    """The stores' clock in tests: time passes only when a test says so (`advance`).

    It starts at the real time: Redis expires idle sessions on its own clock anyway.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self.ms = now_ms() if start_ms is None else start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


def events(
    positions: list[int] | range | None = None,
    *,
    count: int = 0,
    revision: int = 1,
    payload: Any = "x",
) -> list[EventIn]:
    """Events at `positions` (writer-assigned), or `count` without positions."""
    raw = msgspec.Raw(json.dumps(payload).encode())
    if positions is None:
        return [EventIn(revision=revision, payload=raw) for _ in range(count)]
    return [EventIn(revision=revision, payload=raw, position=p) for p in positions]


async def append(
    store: Store,
    session_id: str,
    positions: list[int] | range,
    *,
    incarnation: str = INC,
    **kwargs: Any,
) -> AppendResult:
    return await store.append(session_id, incarnation, events(positions, **kwargs))


def pos(stored: list[StoredEvent]) -> list[int]:
    return [e.position for e in stored]


def cursor(position: int, *, session_id: str = "s", incarnation: str = INC, rev: int = 1) -> Cursor:
    return Cursor(incarnation, rev, position, session_id)


async def page(
    store: Store, session_id: str, start: Cursor | StartWord, limit: int = PAGE
) -> tuple[list[int], Gap | None, Cursor | StartWord, bool]:
    """One HTTP-style replay page: (positions, gap, next cursor, caught up)."""
    after = (
        start.position if isinstance(start, Cursor) else (0 if start == "earliest" else 2**64 - 1)
    )
    snapshot = await store.snapshot(session_id, after, limit, FRAME_BYTES)
    stored, gap, next_cursor, caught_up = read_page(snapshot, start, session_id)
    return pos(stored), gap, next_cursor, caught_up


async def follow(store: Store, sub: ReadProgress, clock: Clock = now_ms) -> list[Output]:
    """Feed a subscription until it waits for a change, as the reader socket does
    (`clock`: the store's, when a restore deadline or the grace matters)."""
    out: list[Output] = []
    while True:
        snapshot = await store.snapshot(sub.session_id, sub.after(), PAGE, FRAME_BYTES)
        out += sub.feed(snapshot, clock())
        if not sub.more:
            return out


async def eventually(
    check: Callable[[], Awaitable[bool]],
    store: Store,
    clock: FakeClock | None = None,
    timeout: float = 5.0,
) -> None:
    """Poll `check`, running the store's periodic sweep between tries. With `clock`, the
    fake clock moves on as much as real time between tries: for what Redis expires on
    its own clock (idle sessions) while the memory store reads the fake one."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        store.sweep()
        await asyncio.sleep(POLL_S)
        if clock is not None:
            clock.advance(int(POLL_S * 1000))


async def changed(future: asyncio.Future[None], timeout: float = 2.0) -> bool:
    """Whether the change future resolves within `timeout` (it is not cancelled)."""
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        return False
    return True
