from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.daemon import DaemonProcess, InProcessDaemon, run_in_process


@pytest.fixture
async def daemon() -> AsyncIterator[InProcessDaemon]:
    """A real uvicorn serving the app on a free loopback port, in the test's loop."""
    async with run_in_process() as d:
        yield d


@pytest.fixture
def daemon_process() -> Iterator[DaemonProcess]:
    """The daemon as a child process: it can be killed, stopped and restarted."""
    with DaemonProcess() as d:
        yield d
