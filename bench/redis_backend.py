"""The Redis backend beside the memory backend, store against store (no HTTP).

    .venv/bin/python -m bench.redis_backend [--batches N] [--batch-size B]

Starts a throw-away `redis-server` on a free loopback port (or uses
LIVEREPLAY_BENCH_REDIS_URL, under a fresh key prefix it deletes afterwards) and
prints, per backend: append throughput, replay read throughput, and the latency
from an append to a waiting reader being told (Redis: through pub/sub).
Bounded in count; prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import msgspec

from livereplay import Limits
from livereplay.protocol.records import EventIn
from livereplay_server.memory import MemoryStore
from livereplay_server.redis_store import RedisStore
from livereplay_server.store import Store

PAYLOAD = msgspec.Raw(msgspec.json.encode({"text": "x" * 200, "n": 1}))


@contextmanager
def redis_server() -> Iterator[str]:
    external = os.environ.get("LIVEREPLAY_BENCH_REDIS_URL")
    if external:
        yield external
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: run scripts/ensure-redis.sh")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@asynccontextmanager
async def started(make: Callable[[], Store]) -> AsyncIterator[Store]:
    store = make()
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def appends(store: Store, batches: int, size: int, sessions: int) -> float:
    """Writer-assigned batches, one writer per session, all sessions at once; events/s."""

    async def writer(session_id: str) -> None:
        for b in range(batches // sessions):
            batch = [
                EventIn(revision=1, payload=PAYLOAD, position=b * size + i + 1) for i in range(size)
            ]
            await store.append(session_id, "bench", batch)

    started_at = time.perf_counter()
    await asyncio.gather(*(writer(f"w{s}") for s in range(sessions)))
    return (batches // sessions) * sessions * size / (time.perf_counter() - started_at)


async def reads(store: Store, rounds: int) -> float:
    """Pages of 256 from the oldest retained event of session w0; events/s."""
    served = 0
    started_at = time.perf_counter()
    for _ in range(rounds):
        after = 0
        while True:
            snapshot = await store.snapshot("w0", after, 256, 1 << 20)
            if not snapshot.events:
                break
            served += len(snapshot.events)
            after = snapshot.events[-1].position
    return served / (time.perf_counter() - started_at)


async def notify_latency(store: Store, samples: int) -> list[float]:
    """Milliseconds from calling append to a caught-up reader's change firing."""
    store.changes.watch("live")
    await store.append("live", "bench", [EventIn(revision=1, payload=PAYLOAD, position=1)])
    latencies = []
    for position in range(2, samples + 2):
        change = store.changes.next_change("live")
        await store.snapshot("live", position - 1, 1, 1 << 20)
        started_at = time.perf_counter()
        event = EventIn(revision=1, payload=PAYLOAD, position=position)
        await asyncio.gather(store.append("live", "bench", [event]), change)
        latencies.append((time.perf_counter() - started_at) * 1000)
    store.changes.unwatch("live")
    return latencies


async def run(args: argparse.Namespace) -> None:
    limits = Limits(max_events_per_session=args.batches * args.batch_size)
    with redis_server() as url:
        prefix = "lrbench-" + uuid.uuid4().hex[:8]
        backends: list[tuple[str, Callable[[], Store]]] = [
            ("memory", lambda: MemoryStore(limits)),
            ("redis", lambda: RedisStore(limits, url, prefix)),
        ]
        print(f"batches={args.batches} batch_size={args.batch_size} payload={len(PAYLOAD)} B")
        header = "backend  append ev/s (1 session)  append ev/s (16 sessions)  read ev/s"
        print(header + "  notify p50/p99 ms")
        for name, make in backends:
            async with started(make) as store:
                one = await appends(store, args.batches, args.batch_size, 1)
                await store.delete("w0")
                many = await appends(store, args.batches, args.batch_size, 16)
                read = await reads(store, 3)
                lat = sorted(await notify_latency(store, args.samples))
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                print(
                    f"{name:<8} {one:>24,.0f} {many:>26,.0f} {read:>10,.0f}"
                    f"  {statistics.median(lat):.3f}/{p99:.3f}"
                )
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        async for key in client.scan_iter(match=f"{prefix}:*", count=500):
            await client.unlink(key)
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--samples", type=int, default=500)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
