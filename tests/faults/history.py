"""The history checker: what one reader saw, across all its reconnects, against what the
writer was told was acknowledged.

Sans-I/O: a `History` is fed the frames a reader received (dicts as decoded from
JSON, from any transport) and `Writers` the acknowledged watermarks the writer
processes printed. `History.check` then says whether the daemon kept its promises
(PROTOCOL.md sections 4 and 5): no (incarnation, position) delivered twice, ever;
positions strictly increasing within an incarnation; every acknowledged position
delivered or covered by a gap frame the reader received.

It folds frames into compact runs as they arrive, so a thousand readers of a long
soak can be checked in one process without keeping every frame.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from livereplay import MalformedCursor, parse_cursor

# Beyond every u64 position: "all of them" in an interval.
END = 2**64
# How many positions of each kind of fault a report names, for diagnosis.
SAMPLE = 5
# Frames kept per reader for a failure message (the checker itself keeps none).
RECENT = 20

Frame = dict[str, Any]
Interval = tuple[int, int]  # closed [lo, hi]


def cursor_point(text: object) -> tuple[str, int] | None:
    """(incarnation, position) of a cursor text; None for null, a start word or junk."""
    if not isinstance(text, str):
        return None
    try:
        cursor = parse_cursor(text)
    except MalformedCursor:
        return None
    return cursor.incarnation, cursor.position


class Runs:
    """A set of positions kept as sorted, disjoint closed intervals.

    Delivery is almost always `last + 1`, which extends the last run in O(1).
    """

    def __init__(self) -> None:
        self._los: list[int] = []
        self._his: list[int] = []
        self.count = 0

    def __contains__(self, p: int) -> bool:
        i = bisect.bisect_right(self._los, p) - 1
        return i >= 0 and p <= self._his[i]

    def add(self, p: int) -> bool:
        """Add `p`; False when it was already there."""
        los, his = self._los, self._his
        if his and p == his[-1] + 1:
            his[-1] = p
        elif not his or p > his[-1] + 1:
            los.append(p)
            his.append(p)
        else:
            i = bisect.bisect_right(los, p) - 1
            if i >= 0 and p <= his[i]:
                return False
            joins_left = i >= 0 and his[i] == p - 1
            joins_right = i + 1 < len(los) and los[i + 1] == p + 1
            if joins_left and joins_right:
                his[i] = his[i + 1]
                del los[i + 1], his[i + 1]
            elif joins_left:
                his[i] = p
            elif joins_right:
                los[i + 1] = p
            else:
                los.insert(i + 1, p)
                his.insert(i + 1, p)
        self.count += 1
        return True

    def intervals(self) -> list[Interval]:
        return list(zip(self._los, self._his, strict=True))


def merged(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for lo, hi in sorted(i for i in intervals if i[0] <= i[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def subtract(pieces: list[Interval], removed: list[Interval]) -> list[Interval]:
    """The parts of the sorted disjoint `pieces` outside the sorted disjoint `removed`."""
    out: list[Interval] = []
    j = 0
    for lo, hi in pieces:
        while j < len(removed) and removed[j][1] < lo:
            j += 1
        k = j
        while lo <= hi and k < len(removed) and removed[k][0] <= hi:
            r_lo, r_hi = removed[k]
            if r_lo > lo:
                out.append((lo, r_lo - 1))
            lo = max(lo, r_hi + 1)
            k += 1
        if lo <= hi:
            out.append((lo, hi))
    return out


def size(intervals: Iterable[Interval]) -> int:
    return sum(hi - lo + 1 for lo, hi in intervals)


def sample(intervals: Iterable[Interval], incarnation: str, limit: int = SAMPLE) -> list[str]:
    out: list[str] = []
    for lo, hi in intervals:
        for p in range(lo, min(hi, lo + limit) + 1):
            out.append(f"{incarnation[:8]}:{p}")
            if len(out) >= limit:
                return out
    return out


class Writers:
    """What the writers reported, per incarnation in the order they started.

    `acked` is a watermark: positions 1..N of that incarnation were acknowledged.
    """

    def __init__(self) -> None:
        self.watermarks: dict[str, int] = {}
        self.appended: dict[str, int] = {}

    def saw(
        self, incarnation: str, *, acked: int | None = None, appended: int | None = None
    ) -> None:
        marks = self.watermarks
        marks[incarnation] = max(marks.get(incarnation, 0), acked or 0)
        if appended is not None:
            self.appended[incarnation] = max(self.appended.get(incarnation, 0), appended)

    @property
    def acknowledged(self) -> int:
        return sum(self.watermarks.values())

    @property
    def sent(self) -> int:
        return sum(self.appended.values())


@dataclass
class Report:
    """One reader's verdict and figures."""

    reader: str
    connections: int = 0
    sent: int = 0  # appended by the writers
    acknowledged: int = 0  # by the writers, all incarnations
    expected: int = 0  # acknowledged positions from where this reader started
    delivered: int = 0  # event deliveries, duplicates included
    covered: int = 0  # expected positions not delivered but covered by a gap
    gaps: Counter[str] = field(default_factory=Counter)  # by detail
    duplicates: int = 0
    out_of_order: int = 0
    holes: int = 0  # expected positions neither delivered nor covered
    first_duplicates: list[str] = field(default_factory=list)
    first_out_of_order: list[str] = field(default_factory=list)
    first_holes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # refusals, error frames
    recent: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.out_of_order or self.holes or self.failures)

    def describe(self) -> str:
        gaps = ", ".join(f"{d}={n}" for d, n in sorted(self.gaps.items())) or "none"
        lines = [
            f"reader {self.reader}: {self.connections} connections, delivered {self.delivered} "
            f"of {self.expected} expected ({self.covered} covered by gaps; gaps {gaps})",
        ]
        if self.duplicates:
            lines.append(f"  {self.duplicates} duplicates, first {self.first_duplicates}")
        if self.out_of_order:
            lines.append(f"  {self.out_of_order} out of order, first {self.first_out_of_order}")
        if self.holes:
            lines.append(f"  {self.holes} unreported holes, first {self.first_holes}")
        if self.failures:
            lines.append(f"  failures: {self.failures[:SAMPLE]}")
        if not self.ok and self.recent:
            lines.append("  last frames: " + " | ".join(self.recent))
        return "\n".join(lines)


def _summary(frame: Frame) -> str:
    kind = frame.get("type")
    if kind == "events":
        events = frame.get("events") or []
        if not events:
            return "events[]"
        first, last = events[0], events[-1]
        inc = str(first.get("replay_incarnation_id", ""))[:8]
        return f"events {inc}:{first.get('position')}..{last.get('position')}"
    if kind == "gap":
        return (
            f"gap {frame.get('detail')} {frame.get('requested_cursor')} -> "
            f"{frame.get('latest_cursor')}"
        )
    if kind == "hello":
        return f"hello {frame.get('cursor')}"
    return str(kind)


class History:
    """Every frame one reader received, across all its connections, folded as it comes."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.connections = 0
        self.started = False
        self.start: tuple[str, int] | None = None  # where reading starts; None: position 0
        self.delivered = 0
        self.gaps: Counter[str] = Counter()
        self.failures: list[str] = []
        self._runs: dict[str, Runs] = {}
        self._last: dict[str, int] = {}
        self._covers: dict[str, list[Interval]] = {}
        self._duplicates: list[str] = []
        self._duplicate_count = 0
        self._disorder: list[str] = []
        self._disorder_count = 0
        self._recent: deque[str] = deque(maxlen=RECENT)

    # -- feeding ---------------------------------------------------------------

    def connected(self) -> None:
        """A new connection begins (its frames follow)."""
        self.connections += 1
        self._recent.append("connect")

    def failed(self, what: str) -> None:
        """The reader stopped for a reason it must not (a 44xx close, a refused handshake)."""
        self.failures.append(what)

    def feed(self, frame: Frame) -> None:
        self._recent.append(_summary(frame))
        kind = frame.get("type")
        if kind == "hello":
            if not self.started:
                self.started = True
                self.start = cursor_point(frame.get("cursor"))
        elif kind == "events":
            self.started = True
            for event in frame.get("events") or []:
                self._deliver(str(event["replay_incarnation_id"]), int(event["position"]))
        elif kind == "gap":
            self.started = True
            self._gap(frame)
        elif kind == "error":
            self.failures.append(f"error frame {frame.get('code')}: {frame.get('message')}")

    def _deliver(self, incarnation: str, position: int) -> None:
        self.delivered += 1
        runs = self._runs.setdefault(incarnation, Runs())
        if not runs.add(position):
            self._duplicate_count += 1
            if len(self._duplicates) < SAMPLE:
                self._duplicates.append(f"{incarnation[:8]}:{position}")
            return
        last = self._last.get(incarnation)
        if last is not None and position < last:
            self._disorder_count += 1
            if len(self._disorder) < SAMPLE:
                self._disorder.append(f"{incarnation[:8]}:{position} after {last}")
        else:
            self._last[incarnation] = position

    def _cover(self, incarnation: str, after: int, upto: int) -> None:
        """Positions after..upto (exclusive, inclusive) are accounted for by a gap."""
        if upto > after:
            self._covers.setdefault(incarnation, []).append((after + 1, upto))

    def _gap(self, frame: Frame) -> None:
        self.gaps[str(frame.get("detail"))] += 1
        requested = cursor_point(frame.get("requested_cursor"))
        latest = cursor_point(frame.get("latest_cursor"))
        if requested is not None:
            req_inc, req_pos = requested
            if latest is not None and latest[0] == req_inc:
                self._cover(req_inc, req_pos, latest[1])
            else:
                # Another incarnation took over, or the session is gone: all of it.
                self._cover(req_inc, req_pos, END)
        if latest is not None and (requested is None or latest[0] != requested[0]):
            # The reader resumes strictly after latest_cursor in the new incarnation.
            self._cover(latest[0], 0, latest[1])

    # -- verdict ---------------------------------------------------------------

    def check(self, writers: Writers) -> Report:
        order = list(writers.watermarks)
        first = 0
        start_position = 0
        if self.start is not None and self.start[0] in writers.watermarks:
            first = order.index(self.start[0])
            start_position = self.start[1]
        report = Report(
            self.reader,
            connections=self.connections,
            sent=writers.sent,
            acknowledged=writers.acknowledged,
            delivered=self.delivered,
            gaps=Counter(self.gaps),
            duplicates=self._duplicate_count,
            out_of_order=self._disorder_count,
            first_duplicates=list(self._duplicates),
            first_out_of_order=list(self._disorder),
            failures=list(self.failures),
        )
        for index in range(first, len(order)):
            incarnation = order[index]
            low = start_position + 1 if index == first else 1
            expected = [(low, writers.watermarks[incarnation])]
            expected = [i for i in expected if i[0] <= i[1]]
            report.expected += size(expected)
            runs = self._runs.get(incarnation)
            missing = subtract(expected, runs.intervals() if runs else [])
            holes = subtract(missing, merged(self._covers.get(incarnation, [])))
            report.covered += size(missing) - size(holes)
            report.holes += size(holes)
            room = SAMPLE - len(report.first_holes)
            if room > 0:
                report.first_holes += sample(holes, incarnation, room)
        report.recent = list(self._recent)
        return report


@dataclass
class Totals:
    """The sum of many readers' reports: one row of the summary table."""

    readers: int = 0
    deliveries: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    holes: int = 0
    covered: int = 0
    gaps: Counter[str] = field(default_factory=Counter)
    failures: int = 0

    def add(self, report: Report) -> None:
        self.readers += 1
        self.deliveries += report.delivered
        self.duplicates += report.duplicates
        self.out_of_order += report.out_of_order
        self.holes += report.holes
        self.covered += report.covered
        self.gaps.update(report.gaps)
        self.failures += len(report.failures)

    @classmethod
    def of(cls, reports: Iterable[Report]) -> Totals:
        totals = cls()
        for report in reports:
            totals.add(report)
        return totals
