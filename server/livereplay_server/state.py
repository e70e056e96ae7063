"""What every endpoint shares: settings, the store, metrics, guards and the start time."""

from __future__ import annotations

from dataclasses import dataclass, field

from .auth import Authenticator
from .clock import now_ms
from .config import Settings
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
    started_ms: int = field(default_factory=now_ms)
    stopping: bool = False

    def __post_init__(self) -> None:
        s = self.settings
        self.auth = Authenticator(
            s.writer_token or None, s.reader_key.encode() if s.reader_key else None
        )
        self.connections = ConnectionLimiter(s.max_connections, s.max_connections_per_client)
        # A full window re-sent after a daemon restart must fit in one burst.
        burst = max(2 * s.max_append_rate, s.max_events_per_session)
        self.append_rate = RateLimiter(s.max_append_rate, burst)

    @property
    def grace_until_ms(self) -> int:
        return self.started_ms + int(self.settings.startup_grace_s * 1000)

    def in_startup_grace(self) -> bool:
        return now_ms() < self.grace_until_ms

    def grace_left_s(self) -> float:
        return max(0, self.grace_until_ms - now_ms()) / 1000
