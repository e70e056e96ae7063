"""One real daemon per fuzz module, served from a thread of its own.

The fuzzers (schemathesis, hypothesis) drive blocking clients (requests and the
sync websockets client), so the daemon cannot share their thread's event loop:
`run_in_process` runs in a background thread with its own loop instead, and a
module shares it across all its examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import urllib.request
from collections.abc import Iterator

from livereplay_server.config import Settings
from tests.support.daemon import InProcessDaemon, run_in_process

START_TIMEOUT_S = 15.0


@contextlib.contextmanager
def threaded_daemon(settings: Settings) -> Iterator[InProcessDaemon]:
    """`run_in_process(settings)` on a loop in another thread, for blocking clients."""
    ready = threading.Event()
    started: list[InProcessDaemon] = []
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with run_in_process(settings) as daemon:
                started.append(daemon)
                ready.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            ready.set()

    def run() -> None:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(serve())
        loop.close()

    thread = threading.Thread(target=run, name="livereplay-fuzz-daemon", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S) or not started:
        raise RuntimeError(f"the daemon did not start: {failure!r}")
    try:
        yield started[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)


def assert_healthy(daemon: InProcessDaemon) -> None:
    """The daemon still answers `/healthz` and `/readyz`: nothing a client sent broke it."""
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(daemon.http_url + path, timeout=5) as answer:
            assert answer.status == 200, path
