"""Connection hardening (issue 9), over raw sockets.

Most tests run a daemon child process and read what it holds from /proc, or what a
plain client sees on the wire: cut-off readers give back their sockets and memory,
incomplete requests time out, an oversized body gets its 413 rather than a reset, and
an oversized URL or head is answered at once. New settings go through `LIVEREPLAY_*`
variables, the same path as their flags. The in-process tests drive uvicorn timings
the daemon has no flag for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.sync.client import connect

from livereplay_server.metrics import Metrics, StoreStats
from livereplay_server.protocols import DaemonConfig, Guard, GuardedHttp, GuardedWebSocket
from tests.support.daemon import DaemonProcess, fast_settings, run_in_process, serving
from tests.support.proc import metric, open_fds, rss_bytes, settled_fds, wait_until
from tests.support.stalled import stalled_reader
from tests.support.wire import append

INC = "writer-1"
MiB = 1024 * 1024
REFUSED = "livereplay_http_connections_refused_total"
ABORTED = "livereplay_connections_aborted_total"


def post_batch(base_url: str, session_id: str, payloads: list[str], first: int) -> None:
    events = [{"revision": 1, "position": first + i, "payload": p} for i, p in enumerate(payloads)]
    body = json.dumps({"incarnation": INC, "events": events}).encode()
    request = urllib.request.Request(
        f"{base_url}/v1/sessions/{session_id}/events",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def dial(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if data:
        sock.sendall(data)
    return sock


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return data


def read_until_closed(socks: list[socket.socket], timeout: float) -> dict[int, tuple[bytes, float]]:
    """What each socket received before the daemon closed it, and when (from now), by
    `fileno()`; sockets still open after `timeout` are missing from the answer."""
    start = time.monotonic()
    received = {s.fileno(): b"" for s in socks}
    closed: dict[int, tuple[bytes, float]] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while len(closed) < len(socks):
            left = start + timeout - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                sock = ready
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[sock.fileno()] += chunk
                else:
                    closed[sock.fileno()] = (received[sock.fileno()], time.monotonic() - start)
                    selector.unregister(sock)
    return closed


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    """Client sockets a test keeps open (never read, never closed) until it ends."""
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def test_cut_off_readers_give_back_their_sockets_and_memory(held: list[socket.socket]) -> None:
    """A reader that never reads is cut off at the send timeout, and the daemon lets go of
    its socket and buffered frames at once: a closing transport waits for a peer that
    never drains it, so only an abort frees it (python-stack.md 1.2)."""
    with DaemonProcess(args=["--send-timeout-s", "1"]) as daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        # 3.6 MB retained: each reader's first frame overfills its socket buffers.
        for first in range(1, 61, 20):
            post_batch(daemon.http_url, "s-1", ["x" * 60_000] * 20, first)
        base_fds, base_rss = settled_fds(pid), rss_bytes(pid)
        path = "/v1/sessions/s-1/stream?cursor=earliest"

        def cut_off(count: int) -> bool:
            return metric(daemon.http_url, "livereplay_reader_cutoffs_total") >= count

        for wave in range(1, 4):
            held.extend(stalled_reader(daemon.port, path) for _ in range(100))
            wait_until(
                partial(cut_off, 100 * wave),
                15,
                f"wave {wave} of stalled readers was not cut off",
            )
        # All 300 peers are still connected, none has read a byte since its handshake.
        wait_until(
            lambda: open_fds(pid) <= base_fds + 1,
            5,
            lambda: f"the daemon still holds {open_fds(pid) - base_fds} sockets of cut-off readers",
        )
        # The heap is trimmed at the next sweep (a second) after the aborts.
        wait_until(
            lambda: rss_bytes(pid) < base_rss + 64 * MiB,
            5,
            lambda: f"RSS still {(rss_bytes(pid) - base_rss) // MiB} MiB above the baseline",
        )
        assert metric(daemon.http_url, "livereplay_readers") == 0


def test_a_response_the_client_never_reads_does_not_keep_its_socket(
    held: list[socket.socket],
) -> None:
    """The close after a response (at once with `Connection: close`, after the keep-alive
    timeout otherwise) lets go of a client that never reads its page."""
    with DaemonProcess(args=["--max-frame-bytes", str(8 * MiB)]) as daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        # A 7.2 MB page: more than the kernel buffers of a connection (4 MiB) can hold.
        for first in range(1, 121, 40):
            post_batch(daemon.http_url, "s-1", ["x" * 60_000] * 40, first)
        base_fds = settled_fds(pid)
        page = (
            "GET /v1/sessions/s-1/events?after=earliest&limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        )
        for close in ("Connection: close\r\n", ""):
            for _ in range(5):
                sock = socket.socket()
                held.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", daemon.port))
                sock.sendall((page + close + "\r\n").encode())
                # The page is on its way; the client reads no more of it.
                assert sock.recv(12) == b"HTTP/1.1 200"
        # uvicorn's keep-alive timeout is 5 s; then the close gives up on a peer that
        # takes nothing.
        wait_until(
            lambda: metric(daemon.http_url, ABORTED, reason="stalled") == 10,
            12,
            "unread responses kept their sockets",
        )
        wait_until(lambda: open_fds(pid) <= base_fds + 1, 2, "aborted sockets stayed open")


async def test_a_reader_dropped_by_the_keepalive_ping_is_let_go_at_once() -> None:
    """uvicorn's ping timeout only closes the transport: with frames buffered for a peer
    that does not read, that close alone never finishes (nor the reader's blocked send)."""
    settings = fast_settings(send_timeout_s=60.0)
    pings = {"ws_ping_interval": 0.5, "ws_ping_timeout": 0.5}
    async with (
        run_in_process(settings, pings) as daemon,
        httpx.AsyncClient(base_url=daemon.http_url) as client,
    ):
        for first in range(1, 61, 20):
            await append(client, "s-1", ["x" * 60_000] * 20, incarnation=INC, first_position=first)
        sock = await asyncio.to_thread(
            stalled_reader, settings.port, "/v1/sessions/s-1/stream?cursor=earliest"
        )
        try:
            connections = daemon.server.server_state.connections
            metrics = daemon.state.metrics
            deadline = time.monotonic() + 8
            while metrics.readers._value.get() or any(
                isinstance(c, WebSocketsSansIOProtocol) for c in connections
            ):
                assert time.monotonic() < deadline, "the unanswered ping left the reader open"
                await asyncio.sleep(0.05)
            assert metrics.connections_aborted.labels("stalled")._value.get() == 1
            assert metrics.reader_cutoffs._value.get() == 0
        finally:
            sock.close()


async def test_a_streamed_response_the_client_stops_taking_is_cut_off() -> None:
    """uvicorn waits forever for a client to take a streamed response's next chunk; the
    daemon cuts it off after the send timeout, like a WebSocket reader."""
    ended = asyncio.Event()

    async def until_disconnect(receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        gone = asyncio.create_task(until_disconnect(receive))
        while not gone.done():
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            await asyncio.sleep(0)
        ended.set()

    settings = fast_settings(send_timeout_s=1.0)
    metrics = Metrics(lambda: StoreStats(0, 0, 0))
    config = DaemonConfig(
        app,
        Guard.from_settings(settings, metrics),
        host="127.0.0.1",
        port=settings.port,
        loop="none",
        http=GuardedHttp,
        ws=GuardedWebSocket,
        lifespan="off",
        log_config=None,
    )
    async with serving(config):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            await asyncio.to_thread(sock.connect, ("127.0.0.1", settings.port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await asyncio.wait_for(ended.wait(), 6)
        finally:
            sock.close()
    assert metrics.connections_aborted.labels("send_timeout")._value.get() == 1


def test_incomplete_requests_are_answered_408_and_closed_within_their_timeouts(
    held: list[socket.socket],
) -> None:
    env = {"LIVEREPLAY_HTTP_HEADER_TIMEOUT_S": "1", "LIVEREPLAY_HTTP_BODY_TIMEOUT_S": "1"}
    with DaemonProcess(env=env) as daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        base_fds = settled_fds(pid)
        port = daemon.port
        slow_head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        half_heads = [dial(port, slow_head) for _ in range(40)]
        body_head = (
            b"POST /v1/sessions/s-1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        half_bodies = [dial(port, body_head + b'{"events": [') for _ in range(40)]
        silent = [dial(port) for _ in range(10)]
        # A keep-alive connection that starts a second request and stalls: uvicorn arms
        # its keep-alive timer only after a response.
        second = dial(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(second).startswith(b"HTTP/1.1 200")
        second.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        # A slowloris that keeps sending a header line every 0.2 s: data is no extension.
        trickler = dial(port, b"GET /healthz HTTP/1.1\r\n")
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.2):
                try:
                    trickler.sendall(b"X-A: b\r\n")
                except OSError:
                    return

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        held.extend([*half_heads, *half_bodies, *silent, second, trickler])
        try:
            closed = read_until_closed(held, timeout=6)
        finally:
            stop.set()
            thread.join(5)
        for group, answer in [
            (half_heads, b"HTTP/1.1 408"),
            (half_bodies, b"HTTP/1.1 408"),
            ([second, trickler], b"HTTP/1.1 408"),
            (silent, b""),
        ]:
            for sock in group:
                assert sock.fileno() in closed, "a connection was left open past its timeout"
                data, took = closed[sock.fileno()]
                assert data.startswith(answer), data[:100]
                assert took < 4, f"closed after {took:.1f} s"
        # The peers keep their end open; the daemon does not wait for them.
        wait_until(lambda: open_fds(pid) <= base_fds + 1, 6, "the daemon kept timed-out sockets")
        assert metric(daemon.http_url, REFUSED, code="header_timeout") == 40 + 10 + 2
        assert metric(daemon.http_url, REFUSED, code="body_timeout") == 40


def test_http_connections_over_the_limit_get_503_and_websockets_are_not_counted(
    held: list[socket.socket],
) -> None:
    with DaemonProcess(env={"LIVEREPLAY_MAX_HTTP_CONNECTIONS": "4"}) as daemon:
        for _ in range(4):
            # Answered, then idle in keep-alive: each holds an HTTP connection.
            sock = dial(daemon.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            held.append(sock)
        extra = dial(daemon.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        closed = read_until_closed([extra], timeout=3)
        assert extra.fileno() in closed, "the connection over the limit was kept open"
        answer, _ = closed[extra.fileno()]
        extra.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"\r\nretry-after: 1\r\n" in head.lower() + b"\r\n"
        assert json.loads(body)["error"]["code"] == "too_many_http_connections"
        # WebSocket readers are governed by --max-connections, not by the HTTP limit.
        with connect(daemon.stream_url("s-1", "earliest"), open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        for sock in held:
            sock.close()
        held.clear()
        wait_until(lambda: _healthz_ok(daemon.http_url), 5, "the limit was not released")
        assert metric(daemon.http_url, REFUSED, code="too_many_http_connections") >= 1


def _healthz_ok(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


def test_an_oversized_body_gets_its_413_when_sent_whole_before_reading() -> None:
    """urllib sends `Connection: close` and the whole body before it reads: the daemon must
    not close with the body unread, or the kernel resets the connection under the 413."""
    limit = 4 * MiB
    with DaemonProcess() as daemon:
        url = daemon.http_url + "/v1/sessions/s-1/events"
        for factor in (1.5, 4):
            body = b"x" * int(limit * factor)
            for chunked in (False, True):
                for _ in range(2):
                    data = (body[i : i + MiB] for i in range(0, len(body), MiB))
                    request = urllib.request.Request(
                        url,
                        data=data if chunked else body,
                        headers={"Content-Type": "application/json"},
                    )
                    with pytest.raises(urllib.error.HTTPError) as refused:
                        urllib.request.urlopen(request, timeout=10)
                    assert refused.value.code == 413, (factor, chunked)
                    answer = json.loads(refused.value.read())
                    assert answer["error"]["code"] == "batch_too_large"


def test_the_rest_of_a_refused_body_is_read_only_up_to_a_bound() -> None:
    """After an early 413 the daemon drops what follows, up to 16 MiB here, then resets
    the connection: a client cannot make it read forever."""
    with DaemonProcess(args=["--max-batch-bytes", str(MiB)]) as daemon:
        head = (
            b"POST /v1/sessions/s-1/events HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
        )
        sock = dial(daemon.port, head % (200 * MiB))
        chunk = b"x" * MiB
        sent = 0
        try:
            with pytest.raises(OSError):
                while sent < 200 * MiB:
                    sock.sendall(chunk)
                    sent += len(chunk)
        finally:
            sock.close()
        assert sent < 100 * MiB
        assert metric(daemon.http_url, ABORTED, reason="linger") == 1


def _raw_request(port: int, path: str, extra: bytes, upgrade: bool) -> tuple[bytes, float]:
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    if upgrade:
        key = base64.b64encode(os.urandom(16))
        head += b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        head += b"Sec-WebSocket-Key: " + key + b"\r\n"
    sock = dial(port)
    start = time.monotonic()
    try:
        sock.sendall(head + extra + b"\r\n")
        answer = sock.recv(65536)
    finally:
        sock.close()
    return answer, time.monotonic() - start


@pytest.mark.parametrize("upgrade", [False, True], ids=["http", "websocket"])
def test_a_url_or_head_over_its_bound_is_answered_414_or_431_at_once(upgrade: bool) -> None:
    stream = "/v1/sessions/x/stream?cursor="
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 1000) for i in range(100))
    cases = [
        (stream + "a" * 60_000, b"", 414),
        (stream + "earliest", b"X-Big: " + b"a" * 70_000 + b"\r\n", 431),
        (stream + "earliest", many, 431),
    ]
    if upgrade:
        # Within the daemon's bounds but over the WebSocket parser's own line limit.
        cases.append((stream + "earliest", b"X-Big: " + b"a" * 10_000 + b"\r\n", 431))
    with DaemonProcess() as daemon:
        for path, extra, status in cases:
            answer, took = _raw_request(daemon.port, path, extra, upgrade)
            assert answer.startswith(b"HTTP/1.1 %d" % status), answer[:200]
            assert took < 2
        # Just under the bound, the same request is served.
        answer, _ = _raw_request(daemon.port, stream + "earliest&x=" + "a" * 7000, b"", upgrade)
        # (Plain HTTP reaches the SSE/NDJSON stream, which wants an `Accept`: 406.)
        assert answer.startswith(b"HTTP/1.1 101" if upgrade else b"HTTP/1.1 406"), answer[:200]
        assert metric(daemon.http_url, REFUSED, code="url_too_long") >= 1
        assert metric(daemon.http_url, REFUSED, code="headers_too_large") >= 2
