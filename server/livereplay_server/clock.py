"""Wall-clock milliseconds, the unit of event timestamps and retention ages."""

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
