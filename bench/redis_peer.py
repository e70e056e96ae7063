"""Redis Streams through redis-py (asyncio, hiredis) as the peer of each daemon figure.

Ingest is XADD `MAXLEN ~ 2048` in pipelines of 100, backlog is one XRANGE of
2048 entries on an open connection, and fan-out is one XADD per event with one
XREAD BLOCK loop (and connection) per consumer, as in perf-anchors item 5.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

RETAINED = 2048
FIELD = b"d"


def client(port: int) -> aioredis.Redis:
    """One connection; no socket timeout, since XREAD BLOCK waits longer than redis-py's 5 s."""
    return aioredis.Redis(
        host="127.0.0.1", port=port, socket_timeout=None, single_connection_client=True
    )


async def xadd_batch(r: aioredis.Redis, key: str, payloads: list[bytes]) -> None:
    pipe = r.pipeline(transaction=False)
    for data in payloads:
        pipe.xadd(key, {FIELD: data}, maxlen=RETAINED, approximate=True)
    await pipe.execute()


async def fill(r: aioredis.Redis, key: str, payloads: list[bytes]) -> int:
    """A stream holding exactly these entries; its length."""
    await r.delete(key)
    for i in range(0, len(payloads), 100):
        pipe = r.pipeline(transaction=False)
        for data in payloads[i : i + 100]:
            pipe.xadd(key, {FIELD: data})
        await pipe.execute()
    length: int = await r.xlen(key)
    return length


async def xrange_all(r: aioredis.Redis, key: str) -> tuple[float, int]:
    """Seconds for one XRANGE of the whole retained stream, and the entries it returned."""
    started = time.perf_counter()
    entries = await r.xrange(key, "-", "+", count=RETAINED)
    return time.perf_counter() - started, len(entries or ())


async def consume(
    r: aioredis.Redis, key: str, on_payload: Callable[[bytes], bool], deadline: float
) -> bool:
    """XREAD BLOCK from the start of a fresh stream until `on_payload` says done (True) or
    time is up (False)."""
    last: Any = "0-0"
    while time.monotonic() < deadline:
        reply: Any = await r.xread({key: last}, count=100, block=1000)
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last = entry_id
                if on_payload(fields[FIELD]):
                    return True
    return False
