"""Scenario 9: hostile input, fuzz-style cases run as one scenario beside a healthy
writer and readers (which the checker judges as usual).

Payloads that are not I-JSON (PROTOCOL.md 2) are refused with 400 `invalid_event`
over HTTP, and by the writer client's `append` with an exception before they enter
its window; numbers too long for a u64 (past Python's 4,300-digit int limit) in
queries and cursors are a client fault (400, or an `error` frame and 4400 on the
stream); a 60 KB stream URL gets a prompt 414 or 400; a body over
`--max-batch-bytes` sent by urllib reads 413, not a reset. Every case is tried and
the failures are listed together.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from typing import Any

from websockets.exceptions import ConnectionClosed

from livereplay import LiveReplayClient
from tests.faults.harness import FaultRun, Scale, http_json
from tests.support.wire import open_stream

SESSION = "fault-s9"
TARGET = "fault-s9-target"
MAX_BATCH_BYTES = 65536
DIGITS = "9" * 5000  # past Python's default 4,300-digit limit on int(str)

HOSTILE_BODIES = {
    "payload 1e400": "1e400",
    "payload integer of 5,000 digits": DIGITS,
    "payload nested 65 deep": "[" * 65 + "]" * 65,
    "payload lone surrogate escape": '"\\ud800"',
}
HOSTILE_PAYLOADS: dict[str, Any] = {
    "payload 1e400": float("inf"),
    "payload integer of 5,000 digits": 10**4999,
    "payload nested 65 deep": [],
    "payload lone surrogate escape": "\ud800",
}
for _ in range(64):
    HOSTILE_PAYLOADS["payload nested 65 deep"] = [HOSTILE_PAYLOADS["payload nested 65 deep"]]


def post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw[:200]


def code_of(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return str(code) if code is not None else None
    return None


def http_cases(base: str, problems: list[str]) -> None:
    events = f"{base}/v1/sessions/{TARGET}/events"
    status, body = post(events, b'{"events": [{"revision": 1, "payload": 0}]}')
    assert status == 200, (status, body)
    for name, raw in HOSTILE_BODIES.items():
        text = '{"events": [{"revision": 1, "payload": ' + raw + "}]}"
        try:
            status, body = post(events, text.encode())
        except OSError as exc:
            problems.append(f"HTTP append, {name}: {type(exc).__name__} {exc}")
            continue
        if (status, code_of(body)) != (400, "invalid_event"):
            problems.append(f"HTTP append, {name}: {status} {str(body)[:120]}")
    long_cursor = f"lashsc2:h1:1:{DIGITS}:{TARGET}"
    long_revision = f"lashsc2:h1:{DIGITS}:1:{TARGET}"
    queries = {
        "after with a 5,000-digit position": f"/events?after={long_cursor}",
        "after with a 5,000-digit revision": f"/events?after={long_revision}",
        "limit of 5,000 digits": f"/events?after=earliest&limit={DIGITS}",
        "revision of 5,000 digits": f"/cursor?revision={DIGITS}",
    }
    for name, query in queries.items():
        try:
            status, body = http_json(f"{base}/v1/sessions/{TARGET}{query}")
        except OSError as exc:
            problems.append(f"GET {name}: {type(exc).__name__} {exc}")
            continue
        if status != 400:
            problems.append(f"GET {name}: {status} {str(body)[:120]}")
    # A body over --max-batch-bytes: urllib must read the 413, not a reset mid-send.
    big = '{"events": [{"revision": 1, "payload": "' + "x" * (4 * MAX_BATCH_BYTES) + '"}]}'
    try:
        status, body = post(events, big.encode())
        if status != 413:
            problems.append(f"oversized body: {status} {str(body)[:120]}")
    except OSError as exc:
        problems.append(f"oversized body: urllib got {type(exc).__name__} ({exc}), not 413")


def long_url(port: int, problems: list[str]) -> None:
    """A 60 KB stream URL: a prompt 414 or 400, not a hang or a silent close."""
    path = f"/v1/sessions/{TARGET}/stream?cursor=" + "a" * 60_000
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            answer = sock.recv(64)
        except OSError as exc:
            problems.append(f"60 KB stream URL: {type(exc).__name__} {exc}")
            return
    if not answer.startswith((b"HTTP/1.1 414", b"HTTP/1.1 400")):
        problems.append(f"60 KB stream URL: answered {answer[:40]!r}")


async def stream_cases(ws_base: str, problems: list[str]) -> None:
    cursors = {
        "stream cursor with a 5,000-digit position": f"lashsc2:h1:1:{DIGITS}:{TARGET}",
        "stream cursor with a 5,000-digit revision": f"lashsc2:h1:{DIGITS}:1:{TARGET}",
    }
    for name, cursor in cursors.items():
        url = f"{ws_base}/v1/sessions/{TARGET}/stream?cursor={cursor}"
        frames: list[Any] = []
        code = None
        try:
            async with open_stream(url) as ws:
                try:
                    while True:
                        frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd else None
        except Exception as exc:  # a refused handshake, a timeout: all wrong here
            problems.append(f"{name}: {type(exc).__name__} {exc}")
            continue
        kinds = [f.get("type") for f in frames]
        if kinds != ["error"] or code != 4400:
            problems.append(f"{name}: frames {kinds}, close {code}")


def client_cases(url: str, problems: list[str]) -> None:
    """The writer client refuses what the daemon would, before it enters the window."""
    client = LiveReplayClient(url)
    try:
        for name, payload in HOSTILE_PAYLOADS.items():
            before = client.stats().appended
            try:
                client.append(TARGET + "-client", 1, payload)
            except Exception:
                pass
            else:
                problems.append(f"writer client append, {name}: accepted into the window")
                continue
            if client.stats().appended != before:
                problems.append(f"writer client append, {name}: counted as appended")
    finally:
        client.close(2)


async def test_hostile_input(fault_run: FaultRun, scale: Scale) -> None:
    run = fault_run
    daemon = run.daemon("--max-batch-bytes", str(MAX_BATCH_BYTES))
    writer = run.writer(daemon.http_url, SESSION, rate=1000)
    for i in range(scale.pick(3, 6)):
        run.reader(f"r-{i}", daemon.http_url, SESSION)
    await asyncio.to_thread(writer.wait_acked, 500, 30)
    problems: list[str] = []
    for _ in range(scale.pick(1, 10)):
        problems.clear()
        await asyncio.to_thread(http_cases, daemon.http_url, problems)
        await asyncio.to_thread(long_url, daemon.port, problems)
        await stream_cases(daemon.ws_url, problems)
        await asyncio.to_thread(client_cases, daemon.http_url, problems)
        run.fault("hostile inputs")
    await asyncio.to_thread(writer.wait_acked, writer.acked + 300, 30)
    await run.finish(daemon.http_url, SESSION)
    run.assert_clean()
    run.assert_no_gaps("hostile input elsewhere must not disturb a healthy session")
    assert not problems, f"{len(problems)} hostile inputs were mishandled:\n" + "\n".join(problems)
