"""What every endpoint shares: settings, the store, metrics, guards and the start time."""

from __future__ import annotations

from dataclasses import dataclass, field

from .activity import Activity
from .auth import Authenticator
from .broadcast import Broadcaster
from .config import Settings
from .failpoints import Failpoints
from .limits import ConnectionLimiter, RateLimiter
from .metrics import Metrics
from .store import Store


@dataclass(slots=True)
class AppState:
    settings: Settings
    store: Store
    metrics: Metrics
    auth: Authenticator = field(init=False)
    connections: ConnectionLimiter = field(init=False)
    append_rate: RateLimiter = field(init=False)
    failpoints: Failpoints = field(default_factory=Failpoints.from_environment)
    broadcaster: Broadcaster = field(init=False)
    activity: Activity = field(default_factory=Activity)
    stopping: bool = False

    def __post_init__(self) -> None:
        s = self.settings
        self.auth = Authenticator(
            s.writer_token or None, s.reader_key.encode() if s.reader_key else None
        )
        self.connections = ConnectionLimiter(s.max_connections, s.max_connections_per_client)
        self.broadcaster = Broadcaster(
            self.store.live,
            self.metrics,
            max_frame_events=s.max_frame_events,
            max_frame_bytes=s.max_frame_bytes,
            coalesce_s=s.live_coalesce_ms / 1000,
            buffer_bytes=s.live_buffer_bytes,
            heartbeat_s=s.heartbeat_s,
        )
        self.store.changes.listener = self.broadcaster.changed
        # Two seconds' worth; a writer re-sending its window is not counted (service.append).
        self.append_rate = RateLimiter(s.max_append_rate, 2 * s.max_append_rate)

    def grace_until_ms(self) -> int:
        """The end of the wait for writers to re-send their windows after the store's data
        began: this daemon's start (memory), or a new, empty data set (Redis)."""
        return self.store.data_since_ms + int(self.settings.startup_grace_s * 1000)
