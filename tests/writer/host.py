"""A minimal host for writer tests: follows one session's stream and reconnects with its cursor.

It records what a host UI would act on (each event position, each gap frame) in
arrival order, so a test can check "every event exactly once" and "no hole
without a gap in its place" across daemon restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.support.wire import Frame, decode, open_stream


@dataclass
class Host:
    ws_url: str  # ws://127.0.0.1:PORT
    session_id: str
    cursor: str = "earliest"
    positions: list[int] = field(default_factory=list)
    gaps: list[Frame] = field(default_factory=list)
    # ("event", position) and ("gap", detail), in arrival order
    seen: list[tuple[str, Any]] = field(default_factory=list)
    connections: int = 0
    _task: asyncio.Task[None] | None = None

    def start(self) -> Host:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            url = f"{self.ws_url}/v1/sessions/{self.session_id}/stream?cursor={self.cursor}"
            try:
                async with open_stream(url) as ws:
                    self.connections += 1
                    async for message in ws:
                        self._handle(decode(message))
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                pass
            await asyncio.sleep(0.05)

    def _handle(self, frame: Frame) -> None:
        if frame["type"] == "events":
            for event in frame["events"]:
                self.positions.append(event["position"])
                self.seen.append(("event", event["position"]))
                self.cursor = event["cursor"]
        elif frame["type"] == "gap":
            self.gaps.append(frame)
            self.seen.append(("gap", frame["detail"]))
            self.cursor = frame["latest_cursor"] or "earliest"
        elif frame["type"] == "error":
            raise AssertionError(f"the daemon refused the host: {frame}")

    async def wait_for(self, position: int, timeout: float = 30.0) -> None:
        """Until the host has handled the event at `position` (or a later one)."""
        deadline = time.monotonic() + timeout
        while not self.positions or self.positions[-1] < position:
            if time.monotonic() > deadline:
                last = self.positions[-1] if self.positions else None
                raise AssertionError(f"host reached {last}, not {position}; gaps {self.gaps}")
            await asyncio.sleep(0.02)

    def assert_no_silent_hole(self) -> None:
        """Consecutive events follow each other unless a gap frame sits between them."""
        previous: int | None = None
        for kind, value in self.seen:
            if kind == "gap":
                previous = None
            else:
                assert previous is None or value == previous + 1, (previous, value, self.seen)
                previous = value
