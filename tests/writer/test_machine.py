"""The writer's rules with no socket: `WriterMachine` driven by hand, messages in and
batches out, and the sender over a fake transport.

The daemon is played by the test: it reads each batch the machine hands out and
answers it, so what the ingest protocol (docs/INGEST.md) says a writer does after a
welcome, an ack, a refusal or a lost connection is checked step by step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

import msgspec
import pytest

from livereplay import Gap, Limits, LiveReplayClient, WriterOptions, WriterRefused
from livereplay.backoff import Backoff
from livereplay.protocol.ingest import (
    PROTOCOL_VERSION,
    Ack,
    Append,
    Error,
    Refused,
    ServerMessage,
    Welcome,
    append_decoder,
    encoder,
)
from livereplay.writer.machine import Reconnect, Stop, WriterMachine
from livereplay.writer.transport import Connection
from livereplay.writer.window import LocalWindow

OPTIONS = WriterOptions(max_batch_events=4, max_in_flight=4)


class FakeClock:
    """Milliseconds that move only when the test says so."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def welcome(instance: str = "d-1", max_batch_events: int = 100) -> Welcome:
    return Welcome(PROTOCOL_VERSION, instance, 1 << 20, max_batch_events, 1 << 20)


def ack(batch: Append, duplicates: int = 0) -> Ack:
    return Ack(batch.id, len(batch.events) - duplicates, duplicates, None, holes=0, skipped=0)


def machine(
    events: int = 0, options: WriterOptions = OPTIONS, clock: FakeClock | None = None
) -> WriterMachine:
    clock = clock or FakeClock()
    window = LocalWindow("w-1", options.window, clock)
    for i in range(events):
        window.append("s", 1, msgspec.Raw(b"%d" % i), None)
    # The largest delay each time: the backoff is part of what is checked.
    backoff = Backoff(options.backoff_base_s, options.backoff_cap_s, lambda _, high: high)
    return WriterMachine(window, options, clock, backoff)


def append(m: WriterMachine, n: int) -> None:
    for i in range(n):
        m.window.append("s", 1, msgspec.Raw(b"%d" % i), None)


def batches_out(m: WriterMachine) -> list[Append]:
    """Every batch the machine sends now."""
    out = []
    while (data := m.next_batch()) is not None:
        out.append(append_decoder.decode(data))
    return out


def positions(batch: Append) -> list[int]:
    return [e.position or 0 for e in batch.events]


def test_nothing_goes_before_the_welcome_and_the_window_goes_after_it() -> None:
    m = machine(10)
    assert m.next_batch() is None and not m.can_send()
    assert m.welcomed(welcome()) is None
    assert m.connected and m.instance == "d-1"
    sent = batches_out(m)
    assert [positions(b) for b in sent] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert [b.id for b in sent] == [1, 2, 3]
    assert {(b.session_id, b.incarnation, b.restore_to) for b in sent} == {("s", "w-1", None)}
    assert m.in_flight == 3


def test_acks_move_the_window_on() -> None:
    m = machine(10)
    m.welcomed(welcome())
    for batch in batches_out(m):
        assert m.received(ack(batch)) is None
    assert m.in_flight == 0 and m.unacknowledged() == 0
    assert (m.counters.sent, m.counters.acknowledged, m.counters.dropped) == (10, 10, 0)
    assert m.window.current_position("s", 1) == 10
    append(m, 2)
    assert [positions(b) for b in batches_out(m)] == [[11, 12]]


def test_at_most_max_in_flight_batches_are_unanswered() -> None:
    m = machine(20, replace(OPTIONS, max_in_flight=2))
    m.welcomed(welcome())
    first, second = batches_out(m)
    assert m.in_flight == 2 and not m.can_send() and m.next_batch() is None
    m.received(ack(first))
    assert m.can_send()
    assert [positions(b) for b in batches_out(m)] == [[9, 10, 11, 12]]
    m.received(ack(second))
    assert [positions(b) for b in batches_out(m)] == [[13, 14, 15, 16]]


def test_a_batch_deferred_by_the_daemon_goes_again_from_the_last_ack_after_waiting() -> None:
    clock = FakeClock()
    m = machine(12, clock=clock)
    m.welcomed(welcome())
    first, second, third = batches_out(m)
    m.received(ack(first))
    deferred = Refused(second.id, "unavailable", "redis is down", retry=True, retry_after_ms=1500)
    assert m.received(deferred) is None  # the daemon closes the socket itself
    m.disconnected()
    assert m.backoff_s() == 1.5  # what the daemon asked, above the backoff's 0.05
    clock.now += 1450
    assert m.backoff_s() == pytest.approx(0.1)  # the backoff again, 0.05 doubled
    m.welcomed(welcome())  # the same instance: nothing to restore
    again = batches_out(m)
    assert [positions(b) for b in again] == [[5, 6, 7, 8], [9, 10, 11, 12]]
    assert all(b.restore_to is None for b in again) and third.id < again[0].id
    assert m.counters.window_resends == 0 and m.counters.reconnects == 1
    # Still deferred: the welcome did not reset the backoff; the first ack does.
    assert m.backoff.attempt == 2
    m.received(ack(again[0]))
    assert m.backoff.attempt == 0
    assert (m.counters.refused, m.counters.dropped) == (0, 0)


def test_a_refused_token_stops_the_writer() -> None:
    m = machine(1)
    decision = m.welcomed(Error("unauthenticated", "no token"))
    assert isinstance(decision, Stop) and decision.refusal.code == "unauthenticated"
    assert m.refusal is decision.refusal and not m.connected

    refused_handshake = machine().connect_failed(http_status=403)
    assert refused_handshake is not None and refused_handshake.refusal.code == "forbidden"

    later = machine(1)
    later.welcomed(welcome())
    batches_out(later)
    decision = later.received(Error("invalid_token", "revoked"))
    assert isinstance(decision, Stop) and isinstance(decision.refusal, WriterRefused)


def test_a_daemon_not_ready_yet_is_retried_not_final() -> None:
    m = machine(1)
    decision = m.welcomed(Error("starting", "redis has not answered yet"))
    assert isinstance(decision, Reconnect) and not decision.fault and m.refusal is None
    assert m.connect_failed(http_status=503) is None and m.counters.connect_failures == 1


def test_a_batch_refused_for_good_is_counted_and_never_sent_again() -> None:
    m = machine(8)
    m.welcomed(welcome())
    first, second = batches_out(m)
    assert m.received(Refused(first.id, "invalid_event", "event 0 is not JSON")) is None
    m.received(ack(second))
    assert (m.counters.refused, m.counters.acknowledged, m.unacknowledged()) == (4, 4, 0)
    m.disconnected()
    m.welcomed(welcome())
    assert batches_out(m) == []


def test_a_new_daemon_instance_gets_the_retained_window_again_as_a_restore() -> None:
    m = machine(10)
    m.welcomed(welcome("d-1"))
    for batch in batches_out(m):
        m.received(ack(batch))
    m.disconnected()
    m.welcomed(welcome("d-2", max_batch_events=6))
    restore = batches_out(m)
    # As large as the daemon takes, oldest first, each marked with the tail it restores to.
    assert [positions(b) for b in restore] == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10]]
    assert [b.restore_to for b in restore] == [10, 10]
    assert m.counters.window_resends == 1 and m.instance == "d-2"


def test_batches_in_flight_when_the_connection_is_lost_go_again_on_the_next() -> None:
    m = machine(8)
    m.welcomed(welcome())
    lost = batches_out(m)
    m.disconnected()
    assert m.in_flight == 0 and not m.connected and m.next_batch() is None
    assert m.unacknowledged() == 8
    m.welcomed(welcome())
    again = batches_out(m)
    assert [positions(b) for b in again] == [positions(b) for b in lost]
    assert [b.id for b in again] == [3, 4]  # ids are never reused
    for batch in again:
        m.received(ack(batch))
    assert (m.counters.sent, m.counters.acknowledged, m.counters.dropped) == (16, 8, 0)


@pytest.mark.parametrize(
    "answer",
    [
        Ack(99, 4, 0, None),  # not the batch in flight
        Refused(99, "invalid_event", "?"),
        welcome(),  # a second welcome
        Error("invalid_frame", "ingest frames are binary MessagePack"),
    ],
)
def test_an_answer_the_protocol_does_not_allow_is_a_fault(answer: ServerMessage) -> None:
    m = machine(4)
    m.welcomed(welcome())
    (batch,) = batches_out(m)
    assert batch.id != 99
    decision = m.received(answer)
    assert isinstance(decision, Reconnect) and decision.fault
    assert m.window.current_position("s", 1) == 0  # nothing acknowledged by it


def test_an_ack_with_nothing_in_flight_is_a_fault() -> None:
    m = machine()
    m.welcomed(welcome())
    decision = m.received(Ack(1, 1, 0, None))
    assert isinstance(decision, Reconnect) and decision.fault


def test_a_welcome_for_another_protocol_is_a_fault() -> None:
    decision = machine().welcomed(msgspec.structs.replace(welcome(), protocol=PROTOCOL_VERSION + 1))
    assert isinstance(decision, Reconnect) and decision.fault


def test_retention_by_age_follows_the_injected_clock() -> None:
    clock = FakeClock()
    options = replace(OPTIONS, window=Limits(max_age_ms=1000))
    m = machine(3, options, clock)  # positions 1..3 at t
    clock.now += 600
    append(m, 2)  # 4..5 at t + 600
    clock.now += 500  # 1..3 are now older than 1000 ms
    assert m.window.trim("s") == 3
    m.welcomed(welcome())
    assert [positions(b) for b in batches_out(m)] == [[4, 5]]
    assert m.counters.dropped == 3  # no daemon ever had them


# -- the sender over a fake transport --------------------------------------------


class FakeDaemon:
    """A transport whose connections reach an in-memory daemon: it welcomes, acks what
    it receives and remembers what it holds; it can hang up on the first batch."""

    def __init__(self, hang_up_on_first_batch: bool = False) -> None:
        self.hang_up = hang_up_on_first_batch
        self.connections = 0
        self.received: list[list[int]] = []  # per connection, every position sent
        self.held: list[int] = []

    async def connect(
        self, url: str, headers: Mapping[str, str], open_timeout: float
    ) -> Connection:
        self.connections += 1
        self.received.append([])
        return FakeConnection(self)


class FakeConnection:
    def __init__(self, daemon: FakeDaemon) -> None:
        self.daemon = daemon
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.inbox.put_nowait(encoder.encode(welcome()))

    async def send(self, message: bytes) -> None:
        daemon = self.daemon
        batch = append_decoder.decode(message)
        daemon.received[-1].extend(positions(batch))
        if daemon.hang_up:
            daemon.hang_up = False
            self.inbox.put_nowait(None)
            return
        new = [p for p in positions(batch) if p > (daemon.held[-1] if daemon.held else 0)]
        daemon.held.extend(new)
        duplicates = len(batch.events) - len(new)
        self.inbox.put_nowait(encoder.encode(ack(batch, duplicates)))

    async def recv(self) -> bytes:
        message = await self.inbox.get()
        if message is None:
            raise ConnectionResetError("the fake daemon hung up")
        return message

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield await self.recv()

    async def close(self) -> None:
        self.inbox.put_nowait(None)


FAST = WriterOptions(backoff_base_s=0.01, backoff_cap_s=0.05, linger_s=0.001)


async def test_the_sender_over_a_fake_transport_delivers_once_across_a_lost_connection() -> None:
    daemon = FakeDaemon(hang_up_on_first_batch=True)
    client = LiveReplayClient("http://daemon.invalid", options=FAST, transport=daemon)
    for i in range(10):
        client.append("s", 1, {"i": i})
    assert await client.aclose(5.0)
    assert daemon.connections == 2
    assert daemon.received[1][0] == 1  # the unanswered batch went again, from the start
    assert daemon.held == list(range(1, 11))
    stats = client.stats()
    assert (stats.acknowledged, stats.reconnects, stats.buffered) == (10, 1, 0)
    assert stats.daemon_instance == "d-1" and not stats.connected


async def test_the_client_ages_its_window_by_the_injected_clock() -> None:
    clock = FakeClock()

    class Unreachable:
        async def connect(
            self, url: str, headers: Mapping[str, str], open_timeout: float
        ) -> Connection:
            raise ConnectionRefusedError("no daemon")

    options = replace(FAST, window=Limits(max_age_ms=1000))
    client = LiveReplayClient(
        "http://daemon.invalid", options=options, clock=clock, transport=Unreachable()
    )
    try:
        old = client.append("s", 1, {"n": 1})
        assert old.ts == clock.now
        clock.now += 1001
        new = client.append("s", 1, {"n": 2})  # the append applies retention: 1 goes
        replay = client.replay_after_cursor(old.cursor)
        assert not isinstance(replay, Gap) and [e.position for e in replay] == [new.position]
        assert client.stats().dropped == 1 and client.stats().retained_events == 1
    finally:
        assert not await client.aclose(0)
