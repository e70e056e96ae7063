"""What the daemon benchmark's processes share: the event payload, its clock, percentiles.

Latency is measured across processes on one machine, so every timestamp is
CLOCK_MONOTONIC in nanoseconds (system-wide on Linux, unlike perf_counter's
origin, which is per process).
"""

from __future__ import annotations

import time
from typing import Final

import msgspec

PAYLOAD_BYTES: Final = 200


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Payload(msgspec.Struct):
    """The fields a reader needs: the event's number, its send time and the run's start."""

    seq: int
    t: int
    t0: int


class _Padded(msgspec.Struct):
    seq: int
    t: int
    t0: int
    pad: str


_encoder: Final = msgspec.json.Encoder()
payload_decoder: Final = msgspec.json.Decoder(Payload)


def payload(seq: int, t: int, t0: int) -> bytes:
    """A JSON payload of about PAYLOAD_BYTES (exactly, for timestamps of this machine's size)."""
    bare = len(_encoder.encode(_Padded(seq, t, t0, "")))
    return _encoder.encode(_Padded(seq, t, t0, "x" * max(0, PAYLOAD_BYTES - bare)))


def batch_body(payloads: list[bytes]) -> bytes:
    """An append batch (`POST /v1/sessions/{id}/events`) of writer-unassigned events."""
    return (
        b'{"events":[' + b",".join(b'{"revision":1,"payload":' + p + b"}" for p in payloads) + b"]}"
    )


def percentile(ordered: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not ordered:
        return 0.0
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])
