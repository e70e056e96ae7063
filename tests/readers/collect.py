"""Run a `subscribe()` reader in the background and wait for what it yields."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from livereplay import CaughtUp, EventOut, Gap, Reader, ReaderStatus
from livereplay.reader.machine import Item


@dataclass
class Collected:
    reader: Reader
    items: list[Item] = field(default_factory=list)
    statuses: list[tuple[ReaderStatus, str | None]] = field(default_factory=list)
    error: BaseException | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def positions(self) -> list[int]:
        return [i.position for i in self.items if isinstance(i, EventOut)]

    @property
    def events(self) -> list[EventOut]:
        return [i for i in self.items if isinstance(i, EventOut)]

    @property
    def gaps(self) -> list[Gap]:
        return [i for i in self.items if isinstance(i, Gap)]

    @property
    def caught_ups(self) -> list[CaughtUp]:
        return [i for i in self.items if isinstance(i, CaughtUp)]

    def start(self) -> Collected:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        try:
            async for item in self.reader:
                self.items.append(item)
        except Exception as exc:
            self.error = exc

    async def wait_for(self, what: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if self.error is not None:
                raise AssertionError(f"the reader failed: {self.error!r}")
            assert time.monotonic() < deadline, f"timed out; items: {self.items!r}"
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.reader.aclose()
