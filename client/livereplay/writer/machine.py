"""`WriterMachine`: what the writer decides, with no socket and no clock of its own.

Sans-I/O: the sender feeds it what happened (a connection attempt failed, a
message arrived, the connection was lost) and asks it what to send; it answers
with encoded batches and with decisions (`Reconnect`, `Stop`). The rules of
docs/INGEST.md live here: the welcome (same instance, or a new one: restore the
window), the in-flight bound, matching answers to batches in order, what an ack
or a refusal does to the window, and the backoff between connections. Time is
the `clock` passed in (monotonic milliseconds), so tests drive it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Final

from livereplay.backoff import Backoff
from livereplay.protocol.clock import Clock
from livereplay.protocol.errors import ProtocolError
from livereplay.protocol.ingest import (
    PROTOCOL_VERSION,
    Ack,
    Error,
    Refused,
    ServerMessage,
    Welcome,
    encode_append,
)
from livereplay.writer.options import WriterOptions
from livereplay.writer.window import Batch, BatchLimits, LocalWindow

log = logging.getLogger("livereplay.writer")

# Refusals retrying cannot change: the token is what it is.
FINAL_REFUSALS: Final = frozenset({"unauthenticated", "forbidden", "invalid_token"})
LOSS_LOG_INTERVAL_MS: Final = 5_000


class WriterRefused(ProtocolError):
    """The daemon refused this writer for good (its token is missing, wrong or does not
    allow writing): nothing more is sent, and `append` raises this from then on."""

    def __str__(self) -> str:
        return f"the daemon refused this writer: {self.code} ({self.message})"


@dataclass(frozen=True, slots=True)
class Reconnect:
    """End this connection, and connect again after `WriterMachine.backoff_s()`."""

    reason: str
    fault: bool = False  # the daemon said something the protocol does not allow


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop for good: retrying would be refused the same way."""

    refusal: WriterRefused


Decision = Reconnect | Stop


class WriterMachine:
    """One writer's connection rules over its `LocalWindow`; driven by the sender."""

    def __init__(
        self,
        window: LocalWindow,
        options: WriterOptions,
        clock: Clock,
        backoff: Backoff | None = None,
    ) -> None:
        self.window = window
        self.options = options
        self.clock = clock
        self.backoff = backoff or Backoff(options.backoff_base_s, options.backoff_cap_s)
        self.counters = window.counters  # the writer's one set of running totals
        # Read by `stats()` without a lock; only the machine writes them.
        self.connected = False
        self.instance: str | None = None  # the daemon's, as of the last welcome
        self.refusal: WriterRefused | None = None
        self.failures_in_a_row = 0  # connection attempts, since the last that worked
        self._in_flight: deque[tuple[int, Batch]] = deque()
        self._limits: BatchLimits | None = None  # this connection's, from its welcome
        self._batch_id = 0
        self._ever_connected = False
        self._retry_later = False  # the daemon deferred a batch: keep backing off
        self._not_before = 0  # a refusal's retry_after_ms, on `clock`
        self._logged_dropped = 0
        self._loss_logged_at = -LOSS_LOG_INTERVAL_MS

    # -- connection events -------------------------------------------------------

    def opened(self) -> None:
        """The transport connected: the welcome comes next."""
        self.failures_in_a_row = 0

    def connect_failed(self, http_status: int = 0) -> Stop | None:
        """A connection attempt failed; a 401 or 403 handshake refused the token."""
        if http_status in (401, 403):
            reason = "unauthenticated" if http_status == 401 else "forbidden"
            return self._stop(WriterRefused(reason, f"HTTP {http_status}"))
        self.counters.connect_failures += 1
        self.failures_in_a_row += 1
        return None

    def welcomed(self, message: ServerMessage) -> Decision | None:
        """The connection's first message; None: it is open for batches."""
        if isinstance(message, Error):
            if message.code in FINAL_REFUSALS:
                return self._stop(WriterRefused(message.code, message.message))
            return Reconnect(f"the daemon cannot take writers yet: {message.code}")
        if not isinstance(message, Welcome) or message.protocol != PROTOCOL_VERSION:
            return Reconnect(
                f"expected a welcome for protocol {PROTOCOL_VERSION}: {message}", fault=True
            )
        counters = self.counters
        if message.instance != self.instance:
            if self.instance is not None:
                counters.window_resends += 1
                log.warning(
                    "livereplay daemon restarted (instance %s -> %s): re-sending the window",
                    self.instance,
                    message.instance,
                )
            self.window.new_instance()
        if self._ever_connected:
            counters.reconnects += 1
        self._ever_connected = True
        self.instance = message.instance
        self.connected = True
        if not self._retry_later:
            self.backoff.reset()
        self._limits = self._batch_limits(message)
        return None

    def disconnected(self) -> None:
        """The connection is gone: what was in flight goes again on the next one."""
        self.connected = False
        self._limits = None
        self._in_flight.clear()
        self.window.connection_lost()

    def backoff_s(self) -> float:
        """How long to wait before the next connection attempt: a backoff, and no
        sooner than the daemon asked."""
        return max(self.backoff.next(), (self._not_before - self.clock()) / 1000)

    # -- batches out -------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Batches sent on this connection and not answered yet."""
        return len(self._in_flight)

    def can_send(self) -> bool:
        """Whether there is something to send and room in flight for it."""
        return (
            self._limits is not None
            and len(self._in_flight) < self.options.max_in_flight
            and self.window.has_pending()
        )

    def next_batch(self) -> bytes | None:
        """The next batch to send, encoded; None when all is sent or the bound is reached."""
        limits = self._limits
        if limits is None or len(self._in_flight) >= self.options.max_in_flight:
            return None
        batch = self.window.next_batch(limits)
        if batch is None:
            return None
        self._batch_id += 1
        self._in_flight.append((self._batch_id, batch))
        return encode_append(
            self._batch_id, batch.session_id, batch.records, self.window.incarnation,
            batch.restore_to,
        )  # fmt: skip

    def unacknowledged(self) -> int:
        """Events retained and not yet acknowledged (unsent or in flight)."""
        return self.window.backlog().buffered

    # -- answers in --------------------------------------------------------------

    def received(self, message: ServerMessage) -> Decision | None:
        """An answer on an open connection; None: carry on."""
        if isinstance(message, Error):
            if message.code in FINAL_REFUSALS:
                return self._stop(WriterRefused(message.code, message.message))
            return Reconnect(f"the daemon refused the connection: {message.code}", fault=True)
        if not isinstance(message, Ack | Refused) or not self._in_flight:
            return Reconnect(f"unexpected message {message}", fault=True)
        batch_id, batch = self._in_flight.popleft()
        if message.id != batch_id:
            return Reconnect(f"answer for batch {message.id}, expected {batch_id}", fault=True)
        if isinstance(message, Ack):
            self.window.acknowledged(batch, message.duplicates, message.holes, message.skipped)
            self._retry_later = False
            self.backoff.reset()
        elif message.retry:
            # The daemon closes now; the batch goes again after a backoff, and not
            # before the daemon said it could be taken.
            self._retry_later = True
            if message.retry_after_ms:
                self._not_before = self.clock() + message.retry_after_ms
            log.warning("livereplay batch deferred by the daemon: %s", message.code)
        else:
            self.window.refused(batch, message.code)
            self._report_refusal(batch, message)
        return None

    def _stop(self, refusal: WriterRefused) -> Stop:
        self.refusal = refusal
        return Stop(refusal)

    def _batch_limits(self, welcome: Welcome) -> BatchLimits:
        opts = self.options
        return BatchLimits(
            max_events=min(opts.max_batch_events, welcome.max_batch_events),
            max_bytes=min(opts.max_batch_bytes, welcome.max_batch_bytes),
            max_event_bytes=min(opts.window.max_event_bytes, welcome.max_event_bytes),
            restore_max_events=welcome.max_batch_events,
            restore_max_bytes=welcome.max_batch_bytes,
        )

    # -- reporting ---------------------------------------------------------------

    def _report_refusal(self, batch: Batch, answer: Refused) -> None:
        while self.window.newly_superseded:
            session_id = self.window.newly_superseded.pop()
            log.warning(
                "livereplay session %s was taken over by another writer; "
                "this client's appends to it are refused from now on",
                session_id,
            )
        if answer.code != "incarnation_superseded":
            log.error(
                "livereplay daemon refused %d events of session %s: %s (%s)",
                len(batch.records),
                batch.session_id,
                answer.code,
                answer.message,
            )

    def report_losses(self) -> None:
        """Log new drops, at most once per `LOSS_LOG_INTERVAL_MS`."""
        dropped = self.counters.dropped
        now = self.clock()
        if dropped > self._logged_dropped and now >= self._loss_logged_at + LOSS_LOG_INTERVAL_MS:
            log.warning(
                "livereplay lost %d events that no daemon had (its window overflowed); "
                "hosts see a gap in their place",
                dropped - self._logged_dropped,
            )
            self._logged_dropped = dropped
            self._loss_logged_at = now


__all__ = [
    "FINAL_REFUSALS",
    "Decision",
    "Reconnect",
    "Stop",
    "WriterMachine",
    "WriterRefused",
]
