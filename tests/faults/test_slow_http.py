"""Scenario 8: slow and incomplete HTTP clients beside a healthy writer and readers.

Many connections send half their headers, or their headers and part of a body, and
stop; one client reads a large replay page a trickle at a time. The healthy writer
and readers must not notice, and the daemon must close every incomplete connection
within its bound (`--http-header-timeout-s`, `--http-body-timeout-s`, given through
their environment variables so a daemon without them still starts).
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import threading
import time

from tests.faults.harness import FaultRun, Scale

SESSION = "fault-s8"
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
# The daemon may take this much longer than its timeout to close a connection.
SLACK_S = 3.0


def half_headers(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


def stalled_body(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"POST /v1/sessions/{SESSION}-x/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        '{"events": ['.encode()
    )
    return sock


def closed(sock: socket.socket) -> bool:
    """The daemon closed it (an answer such as 408 before the close is fine)."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
    except OSError:
        return True
    return False


class SlowPage:
    """Reads one large replay page a kilobyte at a time, then the rest at once."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            f"GET /v1/sessions/{SESSION}/events?after=earliest&limit=1000 HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        self.data = b""
        self._slow = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        self.sock.settimeout(10)
        while True:
            chunk = self.sock.recv(1024 if self._slow else 65536)
            if not chunk:
                return
            self.data += chunk
            if self._slow:
                time.sleep(0.05)

    def finish(self) -> dict[str, object]:
        self._slow = False
        self._thread.join(15)
        self.sock.close()
        head, _, body = self.data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        page: dict[str, object] = json.loads(body)
        return page


async def test_slow_and_incomplete_http_clients(fault_run: FaultRun, scale: Scale) -> None:
    run = fault_run
    daemon = run.daemon(
        "--max-connections-per-client",
        "2000",
        env={
            "LIVEREPLAY_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "LIVEREPLAY_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        },
    )
    writer = run.writer(daemon.http_url, SESSION, "--payload-bytes", "1000", rate=500)
    for i in range(scale.pick(3, 6)):
        run.reader(f"r-{i}", daemon.http_url, SESSION)
    await asyncio.to_thread(writer.wait_acked, 1000, 30)
    slow = await asyncio.to_thread(SlowPage, daemon.port)
    count = scale.pick(100, 400)
    problems: list[str] = []
    for _ in range(scale.pick(1, 4)):
        started = time.monotonic()
        heads = [await asyncio.to_thread(half_headers, daemon.port) for _ in range(count)]
        bodies = [await asyncio.to_thread(stalled_body, daemon.port) for _ in range(count)]
        run.fault("incomplete HTTP requests")
        try:
            # Meanwhile the healthy writer keeps getting acknowledgements.
            await asyncio.to_thread(writer.wait_acked, writer.acked + 500, 20)
            bound = max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + SLACK_S
            while time.monotonic() - started < bound:
                if all(closed(s) for s in heads + bodies):
                    break
                await asyncio.sleep(0.2)
            open_heads = sum(not closed(s) for s in heads)
            open_bodies = sum(not closed(s) for s in bodies)
            if open_heads or open_bodies:
                problems.append(
                    f"{time.monotonic() - started:.1f} s after they stalled, {open_heads} of "
                    f"{count} half-sent headers and {open_bodies} of {count} stalled bodies "
                    "were still open"
                )
        finally:
            for sock in heads + bodies:
                sock.close()
    page = await asyncio.to_thread(slow.finish)
    assert isinstance(page["events"], list) and len(page["events"]) > 0
    await run.finish(daemon.http_url, SESSION)
    run.assert_clean()
    run.assert_no_gaps("slow HTTP clients must not slow the readers")
    assert not problems, "\n".join(problems)
