"""The writer's window as the sender sees it, without a socket: batches out, answers in.

A daemon is played by a `SessionTable`, so what the writer's counters claim can be
checked against what the daemon holds: no batch is ever lost or applied twice by the
bookkeeping, a restored window goes oldest first in as many batches as it takes, and
`dropped` counts exactly the events no daemon ever held.
"""

from __future__ import annotations

import msgspec

from livereplay import Limits
from livereplay.protocol import SessionTable
from livereplay.protocol.records import EventIn
from livereplay.writer.window import Batch, BatchLimits, LocalWindow

INC = "w-1"
LIMITS = BatchLimits(
    max_events=4,
    max_bytes=1 << 20,
    max_event_bytes=1 << 20,
    restore_max_events=8,
    restore_max_bytes=1 << 20,
)


class Daemon:
    """One daemon instance: its table, and the answers it gives a batch."""

    def __init__(self) -> None:
        self.table = SessionTable(Limits(max_events_per_session=10_000))
        self.restores: list[int | None] = []

    def apply(self, window: LocalWindow, batch: Batch, now: int = 1) -> None:
        events = [
            EventIn(e.revision, msgspec.Raw(msgspec.json.encode(e.position)), e.position)
            for e in batch.events
        ]
        result = self.table.append(batch.session_id, INC, events, now, restore_to=batch.restore_to)
        self.restores.append(batch.restore_to)
        window.acknowledged(batch, result.duplicates, result.holes, result.skipped)

    def positions(self, session_id: str = "s") -> list[int]:
        log = self.table.get(session_id)
        return [] if log is None else [e.position for e in log.events]


def window(events: int = 0, **limits: int) -> LocalWindow:
    w = LocalWindow(INC, Limits(**limits))
    for i in range(events):
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    return w


def drain(w: LocalWindow, daemon: Daemon, limits: BatchLimits = LIMITS) -> list[Batch]:
    """Send everything the window has, each batch answered at once."""
    sent = []
    while (batch := w.next_batch(limits)) is not None:
        daemon.apply(w, batch)
        sent.append(batch)
    return sent


def test_a_first_connection_sends_everything_in_order_and_is_no_restore() -> None:
    w = window(10)
    w.new_instance()  # the first welcome
    daemon = Daemon()
    batches = drain(w, daemon)
    assert [len(b.events) for b in batches] == [4, 4, 2]
    assert daemon.positions() == list(range(1, 11))
    assert daemon.restores == [None, None, None]
    assert (w.counters.acknowledged, w.counters.dropped, w.backlog().buffered) == (10, 0, 0)


def test_a_daemon_that_lost_everything_gets_the_whole_window_oldest_first() -> None:
    w = window(20, max_events_per_session=12)  # positions 9..20 retained
    w.new_instance()
    first = Daemon()
    drain(w, first)
    assert first.positions() == list(range(9, 21))
    dropped_before = w.counters.dropped
    assert dropped_before == 8  # trimmed before any daemon had them

    w.new_instance()  # the daemon restarted, empty
    second = Daemon()
    batches = drain(w, second)
    assert second.positions() == list(range(9, 21))
    # In batches as large as the daemon takes, every one marked as part of the restore.
    assert [len(b.events) for b in batches] == [8, 4]
    assert second.restores == [20, 20]
    log = second.table.get("s")
    assert log is not None and log.restoring_to == 0  # over once the tail got there
    # What the first daemon acknowledged and the window no longer holds is not "dropped".
    assert w.counters.dropped == dropped_before
    assert w.backlog().buffered == 0


def test_appends_during_a_restore_follow_it_as_ordinary_batches() -> None:
    w = window(6)
    w.new_instance()
    drain(w, Daemon())
    w.new_instance()
    daemon = Daemon()
    first = w.next_batch(LIMITS)
    assert first is not None and first.restore_to == 6
    daemon.apply(w, first)
    for i in range(3):
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    rest = drain(w, daemon)
    assert daemon.positions() == list(range(1, 10))
    assert [b.restore_to for b in rest] == [None]


def test_a_restore_refused_for_now_is_sent_again_as_a_restore() -> None:
    w = window(12)
    w.new_instance()
    drain(w, Daemon())
    w.new_instance()
    daemon = Daemon()
    first = w.next_batch(LIMITS)
    assert first is not None and first.restore_to == 12
    daemon.apply(w, first)
    refused = w.next_batch(LIMITS)
    assert refused is not None and refused.restore_to == 12
    w.connection_lost()  # refused with retry: the daemon closed; same instance after
    again = drain(w, daemon)
    assert again[0].events == refused.events and again[0].restore_to == 12
    assert daemon.positions() == list(range(1, 13))
    assert (w.counters.dropped, w.counters.refused) == (0, 0)


def test_dropped_counts_exactly_the_positions_the_daemon_never_received() -> None:
    w = window(0, max_events_per_session=5)
    w.new_instance()
    daemon = Daemon()
    for i in range(5):
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    drain(w, daemon)
    for i in range(9):  # 6..14; the window keeps 10..14
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    assert w.backlog().unnoticed_drops == 4  # seen before any batch says so
    drain(w, daemon)
    log = daemon.table.get("s")
    assert log is not None and list(log.holes) == [(6, 9)]
    assert w.counters.dropped == 4 and w.backlog().unnoticed_drops == 0


def test_events_in_flight_when_the_connection_broke_are_not_counted_lost_if_applied() -> None:
    w = window(0, max_events_per_session=4)
    w.new_instance()
    daemon = Daemon()
    for i in range(4):
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    batch = w.next_batch(LIMITS)
    assert batch is not None
    # The daemon applied it, but the ack was lost with the connection.
    daemon.table.append(
        "s", INC, [EventIn(1, msgspec.Raw(b"0"), e.position) for e in batch.events], 1
    )
    w.connection_lost()
    for i in range(4):  # 5..8: the window no longer holds 1..4
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    assert w.backlog().unnoticed_drops == 0  # maybe applied: not claimed lost
    drain(w, daemon)
    assert daemon.positions() == list(range(1, 9))
    assert w.counters.dropped == 0  # the daemon's ack: no hole


def test_events_in_flight_to_a_daemon_that_then_lost_everything_are_lost() -> None:
    w = window(0, max_events_per_session=4)
    w.new_instance()
    for i in range(4):
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    assert w.next_batch(LIMITS) is not None
    w.connection_lost()  # no ack, and the daemon is gone
    for i in range(4):
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    w.new_instance()
    daemon = Daemon()
    drain(w, daemon)
    assert daemon.positions() == [5, 6, 7, 8]
    assert w.counters.dropped == 4


def test_holes_reported_in_an_ack_that_was_lost_are_still_counted() -> None:
    """The daemon applied a batch that skipped positions and died before its ack left:
    the next ack's running total of skipped positions tells the writer of that hole."""
    w = window(0, max_events_per_session=4)
    w.new_instance()
    daemon = Daemon()
    for i in range(4):  # 1..4, acknowledged
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    drain(w, daemon)
    for i in range(8):  # 5..12: the window keeps 9..12, so 5..8 are skipped
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    batch = w.next_batch(LIMITS)
    assert batch is not None and batch.events[0].position == 9
    # Applied (the daemon records the hole 5..8), but the ack is lost with the daemon.
    lost = [EventIn(1, msgspec.Raw(b"0"), e.position) for e in batch.events]
    assert daemon.table.append("s", INC, lost, 1).holes == 4
    w.connection_lost()
    for i in range(8):  # 13..20: the window keeps 17..20, so 13..16 are skipped too
        w.append("s", 1, msgspec.Raw(b"%d" % i), None)
    drain(w, daemon)  # the same data set (another daemon on the same Redis)
    assert daemon.positions()[-4:] == [17, 18, 19, 20]
    never_held = 20 - len(daemon.positions())
    assert never_held == 8
    assert w.counters.dropped == never_held
