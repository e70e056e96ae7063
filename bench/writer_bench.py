"""The writer client: `append()` latency and sustained ingest, beside Redis Streams XADD.

    .venv/bin/python -m bench.writer_bench [--appends N] [--ingest M] [--retained R]

Runs a daemon child process on a free loopback port and a throw-away
`redis-server` (see `bench.redis_backend.redis_server`), then prints:

- `append()` latency percentiles for N appends in a tight loop on one thread
  (the sender thread competing for the GIL), with the daemon healthy, down
  (nothing listening) and stalled (SIGSTOP), beside a synchronous redis-py
  XADD, which is what a runtime appending straight to Redis would wait for;
- sustained ingest: M events from `append()` until the daemon acknowledged the
  last one, beside redis-py XADD in pipelines of 512;
- the daemon's RSS growth per retained event after R events from the client,
  beside each event's encoded size (its JSON record).

Bounded in count and time; prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import time
import urllib.request
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
BATCH = 512  # redis-py's pipelines: the size the figures were taken with


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


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS for the daemon")


def daemon_memory(r: int) -> tuple[float, float]:
    """The daemon's RSS per retained event, after R events from the client, beside each
    event's encoded size (its JSON record, what the daemon serves): bytes, bytes."""
    args = [
        "--log-level", "warning", "--max-append-rate", "0",
        "--max-events-per-session", str(r), "--max-bytes-per-session", str(1 << 30),
        "--memory-budget-bytes", str(1 << 32), "--max-age-s", "3600",
    ]  # fmt: skip
    with DaemonProcess(args=args) as daemon:
        assert daemon.proc is not None
        warm = LiveReplayClient(daemon.http_url)
        for _ in range(2000):  # the allocator's and the interpreter's first costs
            warm.append("bench-warm", 1, PAYLOAD)
        warm.close(30)
        before = rss_kib(daemon.proc.pid)
        client = LiveReplayClient(daemon.http_url)
        for _ in range(r):
            client.append("bench-memory", 1, PAYLOAD)
        client.close(60)
        time.sleep(0.5)
        after = rss_kib(daemon.proc.pid)
        facts = get_json(f"{daemon.http_url}/v1/sessions/bench-memory/cursor")
        retained, size = facts["retained_events"], facts["retained_bytes"]
    return (after - before) * 1024 / retained, size / retained


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return msgspec.json.decode(answer.read())


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
    parser.add_argument(
        "--retained", type=int, default=100_000, help="events retained for the memory figure"
    )
    args = parser.parse_args()
    n, m = args.appends, args.ingest
    largest = WriterOptions().max_batch_events
    print(f"payload: {len(PAYLOAD_JSON)} bytes of JSON; client batches of up to {largest} events")

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
    print(f"{'ratio':34} {rate / xadd_rate:10.2f}x")

    per_event, encoded = daemon_memory(args.retained)
    print(f"\ndaemon RSS per retained event, {args.retained} events from the client (bytes)")
    print(f"{'RSS growth per event':34} {per_event:10.0f}  for {encoded:.0f} bytes encoded")
    print(f"{'beyond the encoding':34} {per_event - encoded:10.0f}")


def _note(stats: WriterStats) -> str:
    """Where the appended events were when the loop ended."""
    return f"acked {stats.acknowledged}, buffered {stats.buffered}, dropped {stats.dropped}"


def _stall(client: LiveReplayClient, daemon: DaemonProcess) -> None:
    """Stop the daemon under a connected client: the connection stays open, silent."""
    wait_connected(client)
    daemon.signal(signal.SIGSTOP)


if __name__ == "__main__":
    main()
