"""The writer client: `append()` latency and sustained ingest, beside Redis Streams XADD.

    .venv/bin/python -m bench.writer_bench [--appends N] [--ingest M]

Runs a daemon child process on a free loopback port and a throw-away
`redis-server` (see `bench.redis_backend.redis_server`), then prints:

- `append()` latency percentiles for N appends in a tight loop on one thread
  (the sender thread competing for the GIL), with the daemon healthy, down
  (nothing listening) and stalled (SIGSTOP), beside a synchronous redis-py
  XADD, which is what a runtime appending straight to Redis would wait for;
- sustained ingest: M events from `append()` until the daemon acknowledged the
  last one, beside redis-py XADD in pipelines of the client's batch size.

Bounded in count and time; prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgspec
from tests.support.daemon import DaemonProcess, free_port

import redis
from bench.redis_backend import redis_server
from livereplay import Limits, LiveReplayClient, WriterOptions, WriterStats

PAYLOAD: dict[str, Any] = {"kind": "delta", "text": "x" * 160, "n": 1}
PAYLOAD_JSON = msgspec.json.encode(PAYLOAD)
BATCH = WriterOptions().max_batch_events


def percentiles(samples_ns: list[int]) -> tuple[float, float, float, float]:
    """p50, p99, p99.9 and max, in microseconds."""
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return at(0.50), at(0.99), at(0.999), ordered[-1] / 1000


def timed(n: int, call: Callable[[int], object]) -> list[int]:
    samples = []
    clock = time.perf_counter_ns
    for i in range(n):
        start = clock()
        call(i)
        samples.append(clock() - start)
    return samples


def wait_connected(client: LiveReplayClient, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not client.stats().connected:
        if time.monotonic() > deadline:
            raise SystemExit("the client did not connect to the daemon")
        time.sleep(0.01)


def append_scenario(
    name: str, url: str, n: int, prepare: Callable[[LiveReplayClient], None] = wait_connected
) -> tuple[str, list[int], WriterStats]:
    """N appends to one session, after `prepare` (by default: wait until connected)."""
    client = LiveReplayClient(url)
    prepare(client)
    samples = timed(n, lambda i: client.append("bench-latency", 1, PAYLOAD))
    stats = client.stats()
    client.close(0.5)
    return name, samples, stats


def ingest_rate(url: str, m: int) -> tuple[float, WriterStats]:
    """M appends as fast as one thread can, until the daemon acknowledged all; events/s."""
    window = Limits(
        max_events_per_session=m,
        max_bytes_per_session=1 << 40,
        memory_budget_bytes=1 << 40,
        max_age_ms=3_600_000,
    )
    client = LiveReplayClient(url, options=replace(WriterOptions(), window=window))
    wait_connected(client)
    start = time.perf_counter()
    for _ in range(m):
        client.append("bench-ingest", 1, PAYLOAD)
    flushed = client.close(120)
    elapsed = time.perf_counter() - start
    stats = client.stats()
    if not flushed:
        print(f"  (not flushed within the time limit: {stats})")
    return stats.acknowledged / elapsed, stats


def redis_figures(url: str, n: int, m: int) -> tuple[list[int], float]:
    r = redis.Redis.from_url(url)
    key = f"livereplay-bench:{uuid.uuid4().hex}:s"
    try:
        samples = timed(
            n,
            lambda i: r.xadd(key, {"payload": PAYLOAD_JSON}, maxlen=2048, approximate=True),
        )
        start = time.perf_counter()
        for first in range(0, m, BATCH):
            pipe = r.pipeline(transaction=False)
            for _ in range(min(BATCH, m - first)):
                pipe.xadd(key, {"payload": PAYLOAD_JSON}, maxlen=2048, approximate=True)
            pipe.execute()
        rate = m / (time.perf_counter() - start)
        return samples, rate
    finally:
        r.delete(key)
        r.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--appends", type=int, default=50_000, help="appends per latency run")
    parser.add_argument("--ingest", type=int, default=200_000, help="events in the ingest run")
    args = parser.parse_args()
    n, m = args.appends, args.ingest
    print(f"payload: {len(PAYLOAD_JSON)} bytes of JSON; client batches of {BATCH} events")

    rows: list[tuple[str, list[int], str]] = []
    with DaemonProcess(args=["--log-level", "warning", "--max-append-rate", "0"]) as daemon:
        name, samples, stats = append_scenario("daemon healthy", daemon.http_url, n)
        rows.append((name, samples, _note(stats)))

        name, samples, stats = append_scenario(
            "daemon stalled (SIGSTOP)", daemon.http_url, n, lambda c: _stall(c, daemon)
        )
        daemon.signal(signal.SIGCONT)
        rows.append((name, samples, _note(stats)))

        rate, ingest_stats = ingest_rate(daemon.http_url, m)

    name, samples, stats = append_scenario(
        "daemon down (nothing listening)", f"http://127.0.0.1:{free_port()}", n, lambda c: None
    )
    rows.append((name, samples, _note(stats)))

    with redis_server() as url:
        xadd_samples, xadd_rate = redis_figures(url, n, m)
    rows.append(("redis-py XADD, synchronous", xadd_samples, "one round trip per event"))

    print(f"\nappend() latency, {n} calls in a tight loop (microseconds)")
    print(f"{'':34} {'p50':>8} {'p99':>8} {'p99.9':>8} {'max':>9}  notes")
    for name, samples, note in rows:
        p50, p99, p999, worst = percentiles(samples)
        print(f"{name:34} {p50:8.1f} {p99:8.1f} {p999:8.1f} {worst:9.1f}  {note}")

    print(f"\nsustained ingest, {m} events to one session (events/s)")
    print(
        f"{'livereplay client -> daemon':34} {rate:10,.0f}  append to last acknowledgement; "
        f"dropped {ingest_stats.dropped}, reconnects {ingest_stats.reconnects}"
    )
    print(f"{'redis-py XADD, pipelines of ' + str(BATCH):34} {xadd_rate:10,.0f}  MAXLEN ~ 2048")


def _note(stats: WriterStats) -> str:
    """Where the appended events were when the loop ended."""
    return f"acked {stats.acknowledged}, buffered {stats.buffered}, dropped {stats.dropped}"


def _stall(client: LiveReplayClient, daemon: DaemonProcess) -> None:
    """Stop the daemon under a connected client: the connection stays open, silent."""
    wait_connected(client)
    daemon.signal(signal.SIGSTOP)


if __name__ == "__main__":
    main()
