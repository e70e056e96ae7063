"""Give the memory that dropped connections held back to the system.

A reader cut off with megabytes of frames buffered frees them when its connection
is aborted, but glibc keeps freed heap pages for reuse: the process would stay at its
peak RSS for good. `malloc_trim` returns the free pages. It walks the heap, so it runs
at most once a sweep (a second), and only after a connection was aborted since the
last one. Where libc is not glibc, nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_trim = _load_trim()
_pending = False


def note_dropped() -> None:
    """A connection was aborted: what it buffered is free now."""
    global _pending
    _pending = True


def release() -> bool:
    """Return free memory to the system if a connection was dropped since last time."""
    global _pending
    if not _pending or _trim is None:
        return False
    _pending = False
    _trim(0)
    return True
