"""Time as the protocol counts it: wall-clock milliseconds (event `ts`, retention ages).

Code with rules about time takes a `Clock` rather than reading this one, so tests
can drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def now_ms() -> int:
    return time.time_ns() // 1_000_000
