"""What every endpoint shares: settings, the store, metrics, and the daemon's start time."""

from __future__ import annotations

from dataclasses import dataclass, field

from .clock import now_ms
from .config import Settings
from .metrics import Metrics
from .store import Store


@dataclass(slots=True)
class AppState:
    settings: Settings
    store: Store
    metrics: Metrics
    started_ms: int = field(default_factory=now_ms)
    stopping: bool = False

    @property
    def grace_until_ms(self) -> int:
        return self.started_ms + int(self.settings.startup_grace_s * 1000)

    def in_startup_grace(self) -> bool:
        return now_ms() < self.grace_until_ms
