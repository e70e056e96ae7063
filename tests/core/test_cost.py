"""The memory budget counts what holding things really costs (PROTOCOL.md section 3).

The table charges fixed costs per event, per msgpack copy and per session beside
their bytes; here they are measured with tracemalloc on the running interpreter.
An estimate may be a little high (the budget then holds a little less) but never
much low: the daemon's memory must stay within what it was given.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import msgspec

from livereplay import Limits
from livereplay.protocol import SessionTable
from livereplay.protocol.records import EventIn

UNBOUNDED = Limits(
    max_events_per_session=10**7,
    max_bytes_per_session=10**12,
    memory_budget_bytes=10**12,
    max_sessions=10**7,
)
PAYLOAD = msgspec.Raw(b'{"type":"delta","text":"' + b"x" * 120 + b'"}')


def allocated(build: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated after `build` (what it keeps), and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, kept
    finally:
        tracemalloc.stop()


def assert_close(charged: int, real: int) -> None:
    """Charged within 15% above and 5% below what is really held."""
    assert real * 0.95 <= charged <= real * 1.15 + 4096, (charged, real)


def test_events_cost_what_the_table_charges() -> None:
    table = SessionTable(UNBOUNDED)
    table.append("s", "w", [EventIn(1, PAYLOAD, 1)], 0)

    def fill() -> None:
        for first in range(2, 20_002, 100):
            batch = [EventIn(1, PAYLOAD, p) for p in range(first, first + 100)]
            table.append("s", "w", batch, first)

    before = table.cost
    real, _ = allocated(fill)
    assert_close(table.cost - before, real)


def test_msgpack_copies_cost_what_the_table_charges() -> None:
    table = SessionTable(UNBOUNDED)
    table.append("s", "w", [EventIn(1, PAYLOAD, p) for p in range(1, 10_001)], 0)
    log = table.get("s")
    assert log is not None
    before = table.cost
    real, _ = allocated(lambda: [e.packed for e in log.events] and None)
    assert_close(table.cost - before, real)


def test_sessions_and_what_they_remember_cost_what_the_table_charges() -> None:
    table = SessionTable(UNBOUNDED)

    def sessions() -> None:
        for i in range(2_000):
            sid = f"session-{i:05d}"
            for k in range(70):  # 64 superseded incarnations remembered
                table.append(sid, f"{k:032x}", [EventIn(1, PAYLOAD, 1)], 0)
            table.append(sid, f"{70:032x}", [EventIn(1, PAYLOAD, p) for p in range(2, 40, 2)], 0)

    real, _ = allocated(sessions)
    assert_close(table.cost, real)
