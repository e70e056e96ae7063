"""Prometheus metrics. One registry per app, so tests can run many apps in one process.

Labels are bounded enums (codes, reasons, causes), never session ids or clients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True, slots=True)
class StoreStats:
    sessions: int
    retained_events: int
    retained_bytes: int
    trimmed: dict[str, int] = field(default_factory=dict)  # by cause, since start
    held_bytes: int | None = None  # what the sessions hold in memory (the budget's measure)
    sessions_evicted: int = 0  # sessions forgotten whole to keep to the budget
    backend_reads: int | None = None  # reads of a session that went to Redis


class _StoreCollector(Collector):
    """Reads the store's own figures at scrape time, so the hot path keeps no gauges."""

    def __init__(self, stats: Callable[[], StoreStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield GaugeMetricFamily("livereplay_sessions", "Sessions known", value=stats.sessions)
        yield GaugeMetricFamily(
            "livereplay_retained_events",
            "Events retained in all sessions",
            value=stats.retained_events,
        )
        yield GaugeMetricFamily(
            "livereplay_retained_bytes",
            "Bytes retained in all sessions",
            value=stats.retained_bytes,
        )
        if stats.held_bytes is not None:
            yield GaugeMetricFamily(
                "livereplay_memory_held_bytes",
                "Bytes the sessions hold in memory (events, msgpack copies, metadata): "
                "what --memory-budget-bytes bounds",
                value=stats.held_bytes,
            )
            yield CounterMetricFamily(
                "livereplay_sessions_evicted",
                "Sessions forgotten whole to keep to the memory budget",
                value=stats.sessions_evicted,
            )
        if stats.backend_reads is not None:
            yield CounterMetricFamily(
                "livereplay_redis_reads",
                "Reads of a session's log from Redis (a live reader is served without one)",
                value=stats.backend_reads,
            )
        trimmed = CounterMetricFamily(
            "livereplay_events_trimmed", "Events dropped by retention, by cause", labels=["cause"]
        )
        for cause, count in sorted(stats.trimmed.items()):
            trimmed.add_metric([cause], count)
        yield trimmed


# `_created` series double the output and mean nothing to a scraper of this daemon.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self, stats: Callable[[], StoreStats]) -> None:
        r = self.registry = CollectorRegistry()
        r.register(_StoreCollector(stats))
        self.appended = Counter("livereplay_events_appended", "Events accepted", registry=r)
        self.duplicates = Counter(
            "livereplay_events_duplicate", "Events ignored as already appended", registry=r
        )
        # Each refusal counts once in each metric it belongs to: a batch refused over HTTP
        # is an append refused and an HTTP error; one refused on the ingest socket is an
        # append refused only. Unauthenticated writers are not counted here (no batch was
        # read): they are HTTP errors or refused connections.
        self.append_refused = Counter(
            "livereplay_appends_refused",
            "Append batches refused, by code, on either channel (POST .../events and the "
            "ingest socket), whatever refused them (body, size, I-JSON, rate, store); "
            "an HTTP one also counts in livereplay_http_errors_total",
            ["code"],
            registry=r,
        )
        self.readers = Gauge(
            "livereplay_readers", "Connected stream readers (WebSocket, SSE, NDJSON)", registry=r
        )
        self.frames_sent = Counter(
            "livereplay_frames_sent", "Frames sent to readers, by type", ["type"], registry=r
        )
        self.bytes_sent = Counter(
            "livereplay_bytes_sent", "Frame bytes sent to readers", registry=r
        )
        # Bound once: a label lookup per frame is measurable on the fan-out path.
        self.frames_by_type = {
            t: self.frames_sent.labels(t)
            for t in ("hello", "events", "gap", "caught_up", "heartbeat", "error")
        }
        self.events_sent = Counter(
            "livereplay_events_sent", "Events delivered to readers", registry=r
        )
        self.gaps = Counter(
            "livereplay_gaps", "Gaps issued, by reason and detail", ["reason", "detail"], registry=r
        )
        self.reader_cutoffs = Counter(
            "livereplay_reader_cutoffs",
            "Readers cut off because a send or close timed out",
            registry=r,
        )
        self.live_slow = Counter(
            "livereplay_live_slow",
            "Live readers moved off the shared frames because their buffer was over budget",
            registry=r,
        )
        self.connections_refused = Counter(
            "livereplay_connections_refused",
            "Reader connections refused, by code",
            ["code"],
            registry=r,
        )
        self.http_errors = Counter(
            "livereplay_http_errors",
            "HTTP error answers of the app, by code: every route, refused appends, "
            "Host/Origin refusals, not_found and method_not_allowed included",
            ["code"],
            registry=r,
        )
        self.backlog_events = Histogram(
            "livereplay_backlog_events",
            "Events replayed before caught_up, per connection",
            buckets=(0, 1, 10, 100, 1000, 10000),
            registry=r,
        )
        # Connection hardening at the protocol level (protocols.py, transport.py).
        self.http_refused = Counter(
            "livereplay_http_connections_refused",
            "HTTP requests refused or timed out before the app answered, by code",
            ["code"],
            registry=r,
        )
        self.connections_aborted = Counter(
            "livereplay_connections_aborted",
            "Closing connections aborted because the peer stopped taking or ending them, by reason",
            ["reason"],
            registry=r,
        )
        self.http_connections = Gauge(
            "livereplay_http_connections",
            "Open HTTP connections, counted from their first request head",
            registry=r,
        )
