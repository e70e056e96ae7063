"""`WriterOptions`: the bounds and timings of one writer client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from livereplay.protocol.constants import MiB
from livereplay.protocol.session_log import Limits

if TYPE_CHECKING:
    from livereplay.writer.machine import WriterRefused


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


__all__ = ["WriterOptions"]
