"""The writer client's one background sender: a connection, batches out, acknowledgements in.

It runs as a task on an event loop (the caller's, or a private one in a thread)
and is the only code of the client that does I/O. What to send it takes from the
`LocalWindow`; it keeps only the batches in flight on the current connection
(at most `max_in_flight`). After any loss it reconnects with full-jitter
exponential backoff and sends again from the last acknowledged position; the
daemon's idempotency makes that exactly-once. A daemon with a new instance id
lost its memory, so every session's retained window goes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from livereplay.backoff import Backoff
from livereplay.protocol.constants import INGEST_SUBPROTOCOL, MiB
from livereplay.protocol.ingest import (
    PROTOCOL_VERSION,
    Ack,
    Error,
    Refused,
    Welcome,
    encode_append,
    server_decoder,
)
from livereplay.protocol.session_log import Limits
from livereplay.writer.window import Batch, BatchLimits, LocalWindow

log = logging.getLogger("livereplay.writer")

LOSS_LOG_INTERVAL_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class WriterOptions:
    """Bounds and timings of one writer client. Every buffer is bounded by these."""

    # The local window (also the send buffer): retention per session and overall, sized
    # in bytes (a burst of small events must not overflow it while the daemon keeps up).
    window: Limits = field(
        default_factory=lambda: Limits(
            max_events_per_session=1_000_000,
            max_bytes_per_session=8 * MiB,
            memory_budget_bytes=64 * MiB,
        )
    )
    # Well below the daemon's default retention (2048 events): a batch is applied whole,
    # so one larger than what the daemon retains would trim events before a live reader
    # could read them (a writer catching up after an outage sends its largest batches).
    max_batch_events: int = 512
    max_batch_bytes: int = 1 * MiB
    # Batches sent and not yet acknowledged, per connection.
    max_in_flight: int = 4
    # How long an idle connection waits to gather a batch after the first event.
    linger_s: float = 0.005
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 5.0
    connect_timeout_s: float = 5.0
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    # How long the interpreter's exit waits for unacknowledged events.
    exit_flush_s: float = 2.0
    # Called once, on the sender's thread, if the daemon refuses this writer for good.
    on_refused: Callable[[WriterRefused], None] | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_events", "max_batch_bytes", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.backoff_base_s <= 0 or self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff needs 0 < backoff_base_s <= backoff_cap_s")


class ProtocolFault(Exception):
    """The daemon said something the ingest protocol does not allow."""


class TryLater(Exception):
    """The daemon refused the connection for now (it is starting, its backend is down)."""


class WriterRefused(Exception):
    """The daemon refused this writer for good (its token is missing, wrong or does not
    allow writing): nothing more is sent, and `append` raises this from then on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the daemon refused this writer: {code} ({message})")
        self.code = code
        self.message = message


# Refusals retrying cannot change: the token is what it is.
FINAL_REFUSALS: Final = frozenset({"unauthenticated", "forbidden", "invalid_token"})


@dataclass(slots=True)
class SenderState:
    """Figures only the sender writes; read by `stats()` without a lock."""

    connected: bool = False
    instance: str | None = None
    reconnects: int = 0
    connect_failures: int = 0
    window_resends: int = 0
    refusal: WriterRefused | None = None  # the daemon refused this writer for good


class Sender:
    def __init__(self, url: str, window: LocalWindow, options: WriterOptions, token: str | None):
        self.url = url
        self.window = window
        self.options = options
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.state = SenderState()
        self.backoff = Backoff(options.backoff_base_s, options.backoff_cap_s)
        self.done = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        # Set by an append when the sender is idle, by an acknowledgement, and by close.
        self._wake = asyncio.Event()
        self._interrupt = asyncio.Event()  # close: cut short a backoff sleep
        self._idle = False
        self._closing = False
        self._deadline = float("inf")
        self._stop_now = False
        self._batch_id = 0
        self._retry_later = False
        self._not_before = 0.0  # a refusal's retry_after_ms, as a monotonic time
        self._logged_dropped = 0
        self._loss_logged_at = -LOSS_LOG_INTERVAL_S
        self._ever_connected = False
        self._failures_in_a_row = 0

    # -- called from any thread ------------------------------------------------

    def notify(self) -> None:
        """An append happened: wake the sender if it sleeps for want of work."""
        if self._idle:
            self._idle = False
            self._call(self._wake.set)

    def begin_close(self, timeout: float) -> None:
        """Send what is buffered for up to `timeout` seconds, then stop."""
        self._deadline = min(self._deadline, time.monotonic() + max(0.0, timeout))
        self._closing = True
        self._call(self._wake_all)

    def stop_now(self) -> None:
        self._stop_now = True
        self._closing = True
        self._call(self._wake_all)

    def _wake_all(self) -> None:
        self._wake.set()
        self._interrupt.set()

    def _call(self, callback: object) -> None:
        assert callable(callback)
        if self.loop is None:
            return
        if threading.get_ident() == self.loop_thread:
            callback()
            return
        with contextlib.suppress(RuntimeError):  # the loop has already stopped
            self.loop.call_soon_threadsafe(callback)

    # -- the task --------------------------------------------------------------

    def _finished(self) -> bool:
        if self._deadline_passed():
            return True
        return self._closing and self._unacked() == 0

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        try:
            while not self._finished():
                try:
                    remaining = self._deadline - time.monotonic()
                    ws = await connect(
                        self.url,
                        subprotocols=[Subprotocol(INGEST_SUBPROTOCOL)],
                        additional_headers=self.headers,
                        compression=None,
                        proxy=None,
                        open_timeout=max(0.1, min(self.options.connect_timeout_s, remaining)),
                        ping_interval=self.options.ping_interval_s,
                        ping_timeout=self.options.ping_timeout_s,
                        close_timeout=1.0,
                        max_size=1 * MiB,
                        user_agent_header="livereplay-writer",
                    )
                except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                    status = exc.response.status_code if isinstance(exc, InvalidStatus) else 0
                    if status in (401, 403):  # the handshake itself refused the token
                        reason = "unauthenticated" if status == 401 else "forbidden"
                        self._refused(WriterRefused(reason, f"HTTP {status}"))
                        return
                    self.state.connect_failures += 1
                    self._failures_in_a_row += 1
                    # Once per outage at warning (appends are buffered meanwhile), then debug.
                    level = logging.WARNING if self._failures_in_a_row == 1 else logging.DEBUG
                    log.log(level, "livereplay cannot connect to %s: %s", self.url, exc)
                    await self._pause()
                    continue
                self._failures_in_a_row = 0
                try:
                    await self._serve(ws)
                except WriterRefused as refusal:
                    self._refused(refusal)
                    return
                except (ConnectionClosed, OSError, TimeoutError, TryLater) as exc:
                    log.warning("livereplay connection lost: %s", exc)
                except (ProtocolFault, msgspec.DecodeError) as exc:
                    log.error("livereplay protocol fault, reconnecting: %s", exc)
                except Exception:
                    log.exception("livereplay connection failed, reconnecting")
                finally:
                    self.state.connected = False
                    self.window.connection_lost()
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1.0):
                            await ws.close()
                if not self._finished():
                    await self._pause()
        except asyncio.CancelledError:
            log.warning("livereplay sender cancelled, %d events unacknowledged", self._unacked())
            raise
        except Exception:
            log.exception("livereplay sender failed; appends are kept but no longer sent")
        finally:
            self.done.set()
            buffered = self._unacked()
            if buffered:
                log.warning("livereplay writer stopped with %d events unacknowledged", buffered)

    def _unacked(self) -> int:
        return self.window.figures().buffered

    async def _pause(self) -> None:
        """Back off before the next connection attempt, unless closing cuts it short."""
        self._interrupt.clear()
        now = time.monotonic()
        delay = max(self.backoff.next(), self._not_before - now)
        delay = min(delay, max(0.0, self._deadline - now))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._interrupt.wait()

    async def _serve(self, ws: ClientConnection) -> None:
        async with asyncio.timeout(self.options.connect_timeout_s):
            welcome = server_decoder.decode(_bytes(await ws.recv()))
        if isinstance(welcome, Error):
            if welcome.code in FINAL_REFUSALS:
                raise WriterRefused(welcome.code, welcome.message)
            raise TryLater(f"the daemon cannot take writers yet: {welcome.code}")
        if not isinstance(welcome, Welcome) or welcome.protocol != PROTOCOL_VERSION:
            raise ProtocolFault(f"expected a welcome for protocol {PROTOCOL_VERSION}: {welcome}")
        self._welcomed(welcome)
        limits = self._batch_limits(welcome)
        in_flight: deque[tuple[int, Batch]] = deque()
        reader = asyncio.create_task(self._read_answers(ws, in_flight))
        writer = asyncio.create_task(self._write_batches(ws, in_flight, limits))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        for task in done:
            task.result()  # re-raise what ended the connection

    def _refused(self, refusal: WriterRefused) -> None:
        """Stop for good: retrying would be refused the same way."""
        self.state.refusal = refusal
        log.error("livereplay writer stopped: %s", refusal)
        if self.options.on_refused is not None:
            try:
                self.options.on_refused(refusal)
            except Exception:
                log.exception("livereplay on_refused callback failed")

    def _welcomed(self, welcome: Welcome) -> None:
        state = self.state
        if welcome.instance != state.instance:
            if state.instance is not None:
                state.window_resends += 1
                log.warning(
                    "livereplay daemon restarted (instance %s -> %s): re-sending the window",
                    state.instance,
                    welcome.instance,
                )
            self.window.new_instance()
        if self._ever_connected:
            state.reconnects += 1
        self._ever_connected = True
        state.instance = welcome.instance
        state.connected = True
        if not self._retry_later:
            self.backoff.reset()
        log.info("livereplay connected to %s (instance %s)", self.url, welcome.instance)

    def _batch_limits(self, welcome: Welcome) -> BatchLimits:
        opts = self.options
        max_bytes = min(opts.max_batch_bytes, welcome.max_batch_bytes)
        return BatchLimits(
            max_events=min(opts.max_batch_events, welcome.max_batch_events),
            max_bytes=max_bytes,
            max_event_bytes=min(opts.window.max_event_bytes, welcome.max_event_bytes),
            restore_max_events=welcome.max_batch_events,
            restore_max_bytes=welcome.max_batch_bytes,
        )

    async def _write_batches(
        self, ws: ClientConnection, in_flight: deque[tuple[int, Batch]], limits: BatchLimits
    ) -> None:
        opts = self.options
        while True:
            if not await self._await_work(in_flight):
                return  # closing, and everything is acknowledged (or time is up)
            if not in_flight and not self._closing and opts.linger_s > 0:
                await asyncio.sleep(opts.linger_s)  # let a batch gather
            while len(in_flight) < opts.max_in_flight:
                batch = self.window.next_batch(limits)
                if batch is None:
                    break
                self._batch_id += 1
                in_flight.append((self._batch_id, batch))
                await ws.send(self._encode(self._batch_id, batch))
            self._report_losses()

    async def _await_work(self, in_flight: deque[tuple[int, Batch]]) -> bool:
        """Wait until there is something to send and room for it; False means stop."""
        while True:
            if self._deadline_passed():
                return False
            if self._closing and not in_flight and self._unacked() == 0:
                return False  # closing, and everything is acknowledged
            self._wake.clear()
            self._idle = True
            if len(in_flight) < self.options.max_in_flight and self.window.has_pending():
                self._idle = False
                return True
            remaining = self._deadline - time.monotonic() if self._closing else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            self._idle = False

    def _deadline_passed(self) -> bool:
        return self._stop_now or time.monotonic() >= self._deadline

    def _encode(self, batch_id: int, batch: Batch) -> bytes:
        return encode_append(
            batch_id, batch.session_id, batch.records, self.window.incarnation, batch.restore_to
        )

    async def _read_answers(
        self, ws: ClientConnection, in_flight: deque[tuple[int, Batch]]
    ) -> None:
        async for message in ws:
            answer = server_decoder.decode(_bytes(message))
            if isinstance(answer, Error):
                if answer.code in FINAL_REFUSALS:
                    raise WriterRefused(answer.code, answer.message)
                raise ProtocolFault(f"the daemon refused the connection: {answer.code}")
            if not isinstance(answer, Ack | Refused) or not in_flight:
                raise ProtocolFault(f"unexpected message {answer}")
            batch_id, batch = in_flight.popleft()
            if answer.id != batch_id:
                raise ProtocolFault(f"answer for batch {answer.id}, expected {batch_id}")
            if isinstance(answer, Ack):
                self.window.acknowledged(batch, answer.duplicates, answer.holes, answer.skipped)
                self._retry_later = False
                self.backoff.reset()
            elif answer.retry:
                # The daemon closes now; the batch goes again after a backoff, and not
                # before the daemon said it could be taken.
                self._retry_later = True
                if answer.retry_after_ms:
                    self._not_before = time.monotonic() + answer.retry_after_ms / 1000
                log.warning("livereplay batch deferred by the daemon: %s", answer.code)
            else:
                self.window.refused(batch, answer.code)
                self._report_refusal(batch, answer)
            self._wake.set()

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

    def _report_losses(self) -> None:
        """Log new drops, at most once per `LOSS_LOG_INTERVAL_S`."""
        dropped = self.window.counters.dropped
        now = time.monotonic()
        if dropped > self._logged_dropped and now >= self._loss_logged_at + LOSS_LOG_INTERVAL_S:
            log.warning(
                "livereplay lost %d events that no daemon had (its window overflowed); "
                "hosts see a gap in their place",
                dropped - self._logged_dropped,
            )
            self._logged_dropped = dropped
            self._loss_logged_at = now


def _bytes(message: str | bytes) -> bytes:
    if isinstance(message, str):
        raise ProtocolFault("the ingest socket carries binary frames only")
    return message
